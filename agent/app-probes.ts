/**
 * The app's original probes, as the injector hands them over (`trellis.dev/app-probes`, projected into
 * the sidecar as a JSON file): `{ "/app-health/<container>/<livez|readyz|startupz>": probe }`. The kubelet
 * probes the agent's status port at those paths, and the agent runs the original probe against the app
 * from inside the pod, where strict mTLS capture does not stand in the way.
 *
 * The file is read once at start (a pod's probes cannot change) and validated here, at the edge, with
 * every problem reported at once; the result is frozen. The shape mirrors `AppProbe` in
 * `injector/probes.ts` (the agent may not import the injector; a test holds the two together).
 */
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { InputError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';
import { APP_PROBE_LIMITS } from './limits.js';

export interface AppProbeHeader {
  readonly name: string;
  readonly value: string;
}

export interface HttpAppProbe {
  readonly kind: 'http';
  readonly port: number;
  /** The kubelet's `host`; absent: the app on loopback. */
  readonly host: string | undefined;
  readonly path: string;
  readonly scheme: 'HTTP' | 'HTTPS';
  readonly headers: readonly AppProbeHeader[];
  readonly timeoutMs: number;
}

export interface TcpAppProbe {
  readonly kind: 'tcp';
  readonly port: number;
  readonly host: string | undefined;
  readonly timeoutMs: number;
}

export interface GrpcAppProbe {
  readonly kind: 'grpc';
  readonly port: number;
  /** The `grpc.health.v1` service name; empty: the server as a whole. */
  readonly service: string;
  readonly timeoutMs: number;
}

export type AppProbe = HttpAppProbe | TcpAppProbe | GrpcAppProbe;

/** Keyed by the status-port path the kubelet asks for. */
export type AppProbeTable = ReadonlyMap<string, AppProbe>;

export const APP_HEALTH_PATH = /^\/app-health\/([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)\/(livez|readyz|startupz)$/;
/** An HTTP field name (RFC 9110 token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$/;

/** Spaces and control characters (C0 and DEL) cannot appear in a request target. */
function hasControlOrSpace(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code <= 0x20 || code === 0x7f) return true;
  }
  return false;
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function checkFields(where: string, value: Record<string, unknown>, allowed: readonly string[], problems: string[]): void {
  for (const key of Object.keys(value)) if (!allowed.includes(key)) problems.push(`${where}: unknown field "${key}" (expected ${allowed.join(', ')})`);
}

function parseOne(where: string, value: unknown, problems: string[]): AppProbe | undefined {
  const probe = record(value);
  if (probe === undefined) {
    problems.push(`${where}: expected an object`);
    return undefined;
  }
  const before = problems.length;
  const { kind, port, timeoutSeconds, host } = probe;
  if (kind !== 'http' && kind !== 'tcp' && kind !== 'grpc') problems.push(`${where}.kind: expected "http", "tcp" or "grpc"`);
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) problems.push(`${where}.port: expected a port number 1-65535`);
  if (typeof timeoutSeconds !== 'number' || !Number.isInteger(timeoutSeconds) || timeoutSeconds < 1 || timeoutSeconds > APP_PROBE_LIMITS.maxTimeoutSeconds) {
    problems.push(`${where}.timeoutSeconds: expected whole seconds, 1-${APP_PROBE_LIMITS.maxTimeoutSeconds}`);
  }
  if (host !== undefined && (typeof host !== 'string' || (isIP(host) === 0 && !HOST_NAME.test(host)))) problems.push(`${where}.host: expected an IP address or a host name`);
  const timeoutMs = (timeoutSeconds as number) * 1000;
  if (kind === 'http') {
    checkFields(where, probe, ['kind', 'port', 'host', 'path', 'scheme', 'headers', 'timeoutSeconds'], problems);
    const path = probe.path ?? '/';
    if (typeof path !== 'string' || !path.startsWith('/') || path.length > APP_PROBE_LIMITS.pathBytes || hasControlOrSpace(path)) {
      problems.push(`${where}.path: expected an absolute path ("/...") of at most ${APP_PROBE_LIMITS.pathBytes} characters, without spaces or control characters`);
    }
    const scheme = probe.scheme ?? 'HTTP';
    if (scheme !== 'HTTP' && scheme !== 'HTTPS') problems.push(`${where}.scheme: expected "HTTP" or "HTTPS"`);
    const headers: AppProbeHeader[] = [];
    if (probe.headers !== undefined) {
      if (!Array.isArray(probe.headers) || probe.headers.length > APP_PROBE_LIMITS.headers) {
        problems.push(`${where}.headers: expected a list of at most ${APP_PROBE_LIMITS.headers} {name, value}`);
      } else {
        let bytes = 0;
        probe.headers.forEach((h: unknown, i) => {
          const header = record(h);
          // The value is sent as given: no CR, LF or NUL may smuggle in another header.
          if (header === undefined || typeof header.name !== 'string' || !HEADER_NAME.test(header.name) || typeof header.value !== 'string' || /[\r\n\0]/.test(header.value)) {
            problems.push(`${where}.headers[${i}]: expected {name: an HTTP field name, value: text without CR, LF or NUL}`);
            return;
          }
          bytes += header.name.length + header.value.length;
          headers.push(Object.freeze({ name: header.name, value: header.value }));
        });
        if (bytes > APP_PROBE_LIMITS.headerBytes) problems.push(`${where}.headers: more than ${APP_PROBE_LIMITS.headerBytes} bytes`);
      }
    }
    if (problems.length > before) return undefined;
    return Object.freeze({ kind, port: port as number, host: host as string | undefined, path: path as string, scheme: scheme as 'HTTP' | 'HTTPS', headers: Object.freeze(headers), timeoutMs });
  }
  if (kind === 'tcp') {
    checkFields(where, probe, ['kind', 'port', 'host', 'timeoutSeconds'], problems);
    if (problems.length > before) return undefined;
    return Object.freeze({ kind, port: port as number, host: host as string | undefined, timeoutMs });
  }
  checkFields(where, probe, ['kind', 'port', 'service', 'timeoutSeconds'], problems);
  const service = probe.service ?? '';
  if (typeof service !== 'string' || service.length > 1024) problems.push(`${where}.service: expected a gRPC service name of at most 1024 characters`);
  if (problems.length > before) return undefined;
  return Object.freeze({ kind: 'grpc', port: port as number, service: service as string, timeoutMs });
}

/** Validates the injector's probe table; throws one InputError listing every problem. */
export function parseAppProbes(text: string, source: string): AppProbeTable {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new InputError(CODE.AGENT_APP_PROBES_INVALID, `${source}: not JSON (${(err as Error).message})`);
  }
  const table = record(doc);
  if (table === undefined) throw new InputError(CODE.AGENT_APP_PROBES_INVALID, `${source}: expected a JSON object keyed by /app-health/<container>/<livez|readyz|startupz>`);
  const problems: string[] = [];
  const entries = Object.entries(table);
  if (entries.length > APP_PROBE_LIMITS.probes) problems.push(`more than ${APP_PROBE_LIMITS.probes} probes`);
  const probes = new Map<string, AppProbe>();
  for (const [path, value] of entries.slice(0, APP_PROBE_LIMITS.probes)) {
    if (!APP_HEALTH_PATH.test(path)) {
      problems.push(`"${path}": expected /app-health/<container>/<livez|readyz|startupz>`);
      continue;
    }
    const probe = parseOne(`"${path}"`, value, problems);
    if (probe !== undefined) probes.set(path, probe);
  }
  if (problems.length > 0) {
    throw new InputError(CODE.AGENT_APP_PROBES_INVALID, `${source}: ${problems.length} problem(s):\n  ${problems.join('\n  ')}`, { details: { issues: problems } });
  }
  return probes;
}

/** Reads and validates `--app-probes FILE` (synchronously: it runs once, at the command line's edge). */
export function loadAppProbesFile(path: string): AppProbeTable {
  let text: string;
  try {
    const size = statSync(path).size;
    if (size > APP_PROBE_LIMITS.fileBytes) throw new InputError(CODE.AGENT_APP_PROBES_INVALID, `${path}: larger than ${APP_PROBE_LIMITS.fileBytes} bytes`);
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(CODE.AGENT_APP_PROBES_UNREADABLE, `${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
  // The downward API writes an empty file when the annotation is missing: no probes to serve.
  if (text.trim() === '') return new Map();
  return parseAppProbes(text, path);
}
