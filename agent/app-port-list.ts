/**
 * The app's ports from the command line: `--app-port P --protocol X`, repeated in pairs (the injector
 * writes one pair per container port), or no port at all (a Job's pod, an app that only calls out).
 * A `--protocol` belongs to the `--app-port` just before it; a port without one is `tcp`. With a single
 * port the two flags may come in either order (`--protocol http --app-port 8080`, as VM units write it).
 * Problems are collected, not thrown, so the command line reports them all at once.
 */
import type { AppPort, PortProtocol } from '../api/data-plane.js';
import { isPortProtocol, PORT_PROTOCOLS } from '../api/port-protocol.js';

import { AGENT_LIMITS } from './limits.js';

/** The control plane takes at most this many ports per registration. */
export const MAX_APP_PORTS = AGENT_LIMITS.maxAppPorts;

export interface PortFlag {
  readonly name: 'app-port' | 'protocol';
  readonly value: string;
}

function protocolOf(text: string, problems: string[]): PortProtocol {
  if (isPortProtocol(text)) return text;
  problems.push(`--protocol "${text}": expected ${PORT_PROTOCOLS.join(', ')}`);
  return 'tcp';
}

function portOf(text: string, problems: string[]): number | undefined {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (Number.isInteger(port) && port >= 1 && port <= 65535) return port;
  problems.push(`--app-port "${text}": expected a port number 1-65535`);
  return undefined;
}

/** `flags` in command-line order; `host` is where the app listens on every port. */
export function appPortsFromFlags(flags: readonly PortFlag[], host: string, problems: string[]): readonly AppPort[] {
  const ports = flags.filter((f) => f.name === 'app-port');
  const protocols = flags.filter((f) => f.name === 'protocol');
  if (ports.length === 0) {
    if (protocols.length > 0) problems.push('--protocol needs an --app-port to apply to');
    return Object.freeze([]);
  }
  if (ports.length > MAX_APP_PORTS) problems.push(`at most ${MAX_APP_PORTS} --app-port flags`);
  const pairs: { port: string; protocol: string | undefined }[] = [];
  if (ports.length === 1 && protocols.length <= 1) {
    pairs.push({ port: (ports[0] as PortFlag).value, protocol: protocols[0]?.value });
  } else {
    for (const flag of flags) {
      const last = pairs[pairs.length - 1];
      if (flag.name === 'app-port') pairs.push({ port: flag.value, protocol: undefined });
      else if (last === undefined) problems.push(`--protocol ${flag.value} comes before any --app-port: write each --protocol after its --app-port`);
      else if (last.protocol !== undefined) problems.push(`--app-port ${last.port} has two --protocol flags (${last.protocol}, ${flag.value})`);
      else last.protocol = flag.value;
    }
  }
  const seen = new Set<number>();
  const result: AppPort[] = [];
  for (const pair of pairs) {
    const port = portOf(pair.port, problems);
    const protocol = protocolOf(pair.protocol ?? 'tcp', problems);
    if (port === undefined) continue;
    if (seen.has(port)) {
      problems.push(`--app-port ${port} is given twice`);
      continue;
    }
    seen.add(port);
    result.push(Object.freeze({ port, protocol, host }));
  }
  return Object.freeze(result);
}
