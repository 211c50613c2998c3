/**
 * What the traffic redirect is told: the sidecar's ports, whose traffic is the proxy's own, and what
 * must never be captured. Validated once here (every problem reported together), then frozen; the rule
 * generator below trusts it completely.
 */
import { InputError } from '../common/errors.js';
import { parseCidr, parsePortRange, type Cidr, type PortRange } from './cidr.js';
import { CODE } from '../common/error-codes.js';

export const DEFAULT_OUTBOUND_PORT = 15001;
export const DEFAULT_INBOUND_PORT = 15006;
export const DEFAULT_TUNNEL_PORT = 15008;
export const DEFAULT_ADMIN_PORT = 15000;
export const SSH_PORT = 22;

/**
 * Source addresses the inbound sidecar binds when it hands a connection to an app that listens only on
 * the workload's own address (not loopback): connections from these over `lo` are never captured, which
 * would otherwise send the hand-off straight back to the inbound capture port. Istio uses the same pair.
 * The IPv6 one must be configured on `lo` (`ip -6 addr add ::6/128 dev lo`) before it can be bound.
 */
export const INBOUND_HANDOFF_SOURCE_V4 = '127.0.0.6';
export const INBOUND_HANDOFF_SOURCE_V6 = '::6';

/** Where the rules run: on a VM SSH is always excluded (never lock the operator out); in a pod it is optional. */
export type RedirectPlatform = 'vm' | 'pod';

export interface RedirectOptionsInput {
  readonly platform?: RedirectPlatform;
  readonly outboundPort?: number;
  readonly inboundPort?: number;
  readonly tunnelPort?: number;
  readonly adminPort?: number;
  /** The user(s) the proxy runs as; their connections are never captured. */
  readonly proxyUids?: readonly number[];
  /** The group(s) the proxy runs as; their connections are never captured. */
  readonly proxyGids?: readonly number[];
  /** Destination ports on this workload that inbound capture leaves alone ("8080", "9000-9100"). */
  readonly excludeInboundPorts?: readonly (string | number)[];
  /** Destination ports elsewhere that outbound capture leaves alone. */
  readonly excludeOutboundPorts?: readonly (string | number)[];
  /** Source ranges whose connections to this workload are not captured. */
  readonly excludeInboundCidrs?: readonly string[];
  /** Destination ranges that outbound capture leaves alone (e.g. a cloud metadata service). */
  readonly excludeOutboundCidrs?: readonly string[];
  /** Pods only (VMs always exclude SSH): also leave port 22 alone. */
  readonly excludeSsh?: boolean;
  /** Also install the IPv6 rules (ip6tables). */
  readonly ipv6?: boolean;
}

export interface RedirectConfig {
  readonly platform: RedirectPlatform;
  readonly outboundPort: number;
  readonly inboundPort: number;
  readonly tunnelPort: number;
  readonly adminPort: number;
  readonly proxyUids: readonly number[];
  readonly proxyGids: readonly number[];
  readonly excludeInboundPorts: readonly PortRange[];
  readonly excludeOutboundPorts: readonly PortRange[];
  readonly excludeInboundCidrs: readonly Cidr[];
  readonly excludeOutboundCidrs: readonly Cidr[];
  readonly excludeSsh: boolean;
  readonly ipv6: boolean;
}

const MAX_ID = 4_294_967_294; // (uid_t)-1 means "no user" to the kernel

function uniqueBy<T>(items: readonly T[], key: (item: T) => string): T[] {
  const seen = new Set<string>();
  return items.filter((item) => {
    const k = key(item);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function checkedPort(name: string, value: number | undefined, fallback: number, problems: string[]): number {
  const p = value ?? fallback;
  if (!Number.isInteger(p) || p < 1 || p > 65535) problems.push(`${name}: ${String(p)} is not a port (1-65535)`);
  return p;
}

/** The agent's four ports, each its own. */
function agentPorts(input: RedirectOptionsInput, problems: string[]): { outboundPort: number; inboundPort: number; tunnelPort: number; adminPort: number } {
  const ports = {
    outboundPort: checkedPort('outbound port', input.outboundPort, DEFAULT_OUTBOUND_PORT, problems),
    inboundPort: checkedPort('inbound port', input.inboundPort, DEFAULT_INBOUND_PORT, problems),
    tunnelPort: checkedPort('tunnel port', input.tunnelPort, DEFAULT_TUNNEL_PORT, problems),
    adminPort: checkedPort('admin port', input.adminPort, DEFAULT_ADMIN_PORT, problems),
  };
  const named: ReadonlyArray<readonly [string, number]> = [
    ['outbound port', ports.outboundPort],
    ['inbound port', ports.inboundPort],
    ['tunnel port', ports.tunnelPort],
    ['admin port', ports.adminPort],
  ];
  for (let i = 0; i < named.length; i++) {
    for (let j = i + 1; j < named.length; j++) {
      const a = named[i] as readonly [string, number];
      const b = named[j] as readonly [string, number];
      if (a[1] === b[1]) problems.push(`${a[0]} and ${b[0]} are both ${a[1]}: each needs its own port`);
    }
  }
  return ports;
}

function checkedIds(name: string, values: readonly number[] | undefined, problems: string[]): number[] {
  const list = [...(values ?? [])];
  for (const id of list) if (!Number.isInteger(id) || id < 0 || id > MAX_ID) problems.push(`${name}: ${String(id)} is not a numeric id`);
  return [...new Set(list)];
}

function portRanges(name: string, values: readonly (string | number)[] | undefined, problems: string[]): PortRange[] {
  const parsed: PortRange[] = [];
  for (const value of values ?? []) {
    try {
      parsed.push(parsePortRange(value));
    } catch (err) {
      problems.push(`${name}: ${(err as Error).message}`);
    }
  }
  return uniqueBy(parsed, (p) => p.text);
}

function cidrList(name: string, values: readonly string[] | undefined, ipv6: boolean, problems: string[]): Cidr[] {
  const parsed: Cidr[] = [];
  for (const value of values ?? []) {
    try {
      const cidr = parseCidr(value);
      if (cidr.family === 6 && !ipv6) problems.push(`${name}: ${cidr.text} is IPv6, but the IPv6 rules are not requested (--ipv6)`);
      parsed.push(cidr);
    } catch (err) {
      problems.push(`${name}: ${(err as Error).message}`);
    }
  }
  return uniqueBy(parsed, (c) => c.text);
}

export function validateRedirectOptions(input: RedirectOptionsInput): RedirectConfig {
  const problems: string[] = [];
  const platform = input.platform ?? 'vm';
  if (platform !== 'vm' && platform !== 'pod') problems.push(`platform: "${String(platform)}" is not vm or pod`);
  const { outboundPort, inboundPort, tunnelPort, adminPort } = agentPorts(input, problems);
  const proxyUids = checkedIds('proxy uid', input.proxyUids, problems);
  const proxyGids = checkedIds('proxy gid', input.proxyGids, problems);
  if (proxyUids.length === 0 && proxyGids.length === 0) {
    problems.push("proxy uid/gid: at least one is required, or the proxy's own connections would be captured again in an endless loop");
  }
  const ipv6 = input.ipv6 ?? false;
  const excludeInboundPorts = portRanges('excluded inbound port', input.excludeInboundPorts, problems);
  const excludeOutboundPorts = portRanges('excluded outbound port', input.excludeOutboundPorts, problems);
  const excludeInboundCidrs = cidrList('excluded inbound CIDR', input.excludeInboundCidrs, ipv6, problems);
  const excludeOutboundCidrs = cidrList('excluded outbound CIDR', input.excludeOutboundCidrs, ipv6, problems);

  if (platform === 'vm' && input.excludeSsh === false) {
    problems.push('exclude SSH: on a VM port 22 is always excluded, so a broken sidecar cannot lock the operator out');
  }
  const excludeSsh = platform === 'vm' ? true : (input.excludeSsh ?? false);

  if (problems.length > 0) {
    throw new InputError(CODE.REDIRECT_OPTIONS_INVALID, `invalid redirect options:\n  - ${problems.join('\n  - ')}`, {
      details: { problems },
    });
  }
  return Object.freeze({
    platform,
    outboundPort,
    inboundPort,
    tunnelPort,
    adminPort,
    proxyUids: Object.freeze(proxyUids),
    proxyGids: Object.freeze(proxyGids),
    excludeInboundPorts: Object.freeze(excludeInboundPorts),
    excludeOutboundPorts: Object.freeze(excludeOutboundPorts),
    excludeInboundCidrs: Object.freeze(excludeInboundCidrs),
    excludeOutboundCidrs: Object.freeze(excludeOutboundCidrs),
    excludeSsh,
    ipv6,
  });
}
