/**
 * The labels and annotations users put on namespaces and pods to steer injection, and their parsing.
 * A malformed value refuses the pod with every problem listed: a typo in an exclusion list silently
 * ignored would capture traffic the operator meant to leave alone.
 */
import { isIP } from 'node:net';

export const LABEL_NAMESPACE_INJECTION = 'trellis.dev/injection';
/** Label or annotation on a pod: "false" opts out; "true" opts in where the namespace is not labelled. */
export const KEY_INJECT = 'trellis.dev/inject';
export const ANNOTATION_STATUS = 'trellis.dev/status';
export const ANNOTATION_EXCLUDE_INBOUND_PORTS = 'trellis.dev/exclude-inbound-ports';
export const ANNOTATION_EXCLUDE_OUTBOUND_PORTS = 'trellis.dev/exclude-outbound-ports';
export const ANNOTATION_EXCLUDE_INBOUND_CIDRS = 'trellis.dev/exclude-inbound-cidrs';
export const ANNOTATION_EXCLUDE_OUTBOUND_CIDRS = 'trellis.dev/exclude-outbound-cidrs';
/** "false" keeps the pod's probes as they are (they then fail under strict mTLS unless their ports are excluded). */
export const ANNOTATION_REWRITE_PROBES = 'trellis.dev/rewrite-app-probes';
/** "8080=http,9000=tcp,9090=grpc" (tcp, http, http2, grpc): the protocol of a port, over what its name says. */
export const ANNOTATION_PORT_PROTOCOLS = 'trellis.dev/port-protocols';
/** "classic" forces the first-container layout on clusters that support native sidecars. */
export const ANNOTATION_SIDECAR_MODE = 'trellis.dev/sidecar-mode';

export type { PortProtocol } from '../api/port-protocol.js';
import type { PortProtocol } from '../api/port-protocol.js';

export interface PodInjectionOptions {
  readonly excludeInboundPorts: readonly number[];
  readonly excludeOutboundPorts: readonly number[];
  readonly excludeInboundCidrs: readonly string[];
  readonly excludeOutboundCidrs: readonly string[];
  readonly rewriteProbes: boolean;
  readonly portProtocols: ReadonlyMap<number, PortProtocol>;
  readonly sidecarMode: 'auto' | 'classic' | 'native';
}

function splitList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function parsePorts(key: string, value: string | undefined, errors: string[]): number[] {
  if (value === undefined) return [];
  const out: number[] = [];
  for (const item of splitList(value)) {
    const port = /^\d{1,5}$/.test(item) ? Number(item) : NaN;
    if (!(port >= 1 && port <= 65535)) errors.push(`${key}: "${item}" is not a port (1-65535)`);
    else if (!out.includes(port)) out.push(port);
  }
  return out;
}

/** An IPv4 or IPv6 CIDR with a prefix length in range; a bare address is taken as a single host. */
export function parseCidr(text: string): string | null {
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  const family = isIP(address);
  if (family === 0) return null;
  const max = family === 4 ? 32 : 128;
  if (slash === -1) return `${address}/${max}`;
  const prefixText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText)) return null;
  const prefix = Number(prefixText);
  return prefix <= max ? `${address}/${prefix}` : null;
}

function parseCidrs(key: string, value: string | undefined, errors: string[]): string[] {
  if (value === undefined) return [];
  const out: string[] = [];
  for (const item of splitList(value)) {
    const cidr = parseCidr(item);
    if (cidr === null) errors.push(`${key}: "${item}" is not an IPv4 or IPv6 CIDR (e.g. 10.0.0.0/8, fd00::/8)`);
    else if (!out.includes(cidr)) out.push(cidr);
  }
  return out;
}

function parseBoolean(key: string, value: string | undefined, fallback: boolean, errors: string[]): boolean {
  if (value === undefined) return fallback;
  if (value === 'true') return true;
  if (value === 'false') return false;
  errors.push(`${key}: "${value}" must be "true" or "false"`);
  return fallback;
}

function parsePortProtocols(value: string | undefined, errors: string[]): Map<number, PortProtocol> {
  const out = new Map<number, PortProtocol>();
  if (value === undefined) return out;
  for (const item of splitList(value)) {
    const match = /^(\d{1,5})=(tcp|http2|http|grpc)$/.exec(item);
    const port = match === null ? NaN : Number(match[1]);
    if (match === null || !(port >= 1 && port <= 65535)) {
      errors.push(`${ANNOTATION_PORT_PROTOCOLS}: "${item}" must be PORT=tcp, PORT=http, PORT=http2 or PORT=grpc`);
      continue;
    }
    out.set(port, match[2] as PortProtocol);
  }
  return out;
}

export interface ParsedOptions {
  readonly options: PodInjectionOptions;
  /** Every malformed annotation, one line each; empty when all parsed. */
  readonly errors: readonly string[];
}

export function parsePodInjectionOptions(annotations: Readonly<Record<string, string>>): ParsedOptions {
  const errors: string[] = [];
  const mode = annotations[ANNOTATION_SIDECAR_MODE] ?? 'auto';
  if (!['auto', 'classic', 'native'].includes(mode)) errors.push(`${ANNOTATION_SIDECAR_MODE}: "${mode}" must be auto, classic or native`);
  const options: PodInjectionOptions = Object.freeze({
    excludeInboundPorts: Object.freeze(parsePorts(ANNOTATION_EXCLUDE_INBOUND_PORTS, annotations[ANNOTATION_EXCLUDE_INBOUND_PORTS], errors)),
    excludeOutboundPorts: Object.freeze(parsePorts(ANNOTATION_EXCLUDE_OUTBOUND_PORTS, annotations[ANNOTATION_EXCLUDE_OUTBOUND_PORTS], errors)),
    excludeInboundCidrs: Object.freeze(parseCidrs(ANNOTATION_EXCLUDE_INBOUND_CIDRS, annotations[ANNOTATION_EXCLUDE_INBOUND_CIDRS], errors)),
    excludeOutboundCidrs: Object.freeze(parseCidrs(ANNOTATION_EXCLUDE_OUTBOUND_CIDRS, annotations[ANNOTATION_EXCLUDE_OUTBOUND_CIDRS], errors)),
    rewriteProbes: parseBoolean(ANNOTATION_REWRITE_PROBES, annotations[ANNOTATION_REWRITE_PROBES], true, errors),
    portProtocols: parsePortProtocols(annotations[ANNOTATION_PORT_PROTOCOLS], errors),
    sidecarMode: (['auto', 'classic', 'native'].includes(mode) ? mode : 'auto') as PodInjectionOptions['sidecarMode'],
  });
  return { options, errors };
}
