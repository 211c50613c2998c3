/**
 * A "pair" is what traffic crosses between the load generator and the backend: nothing (no proxy), an
 * HAProxy mTLS pair, an nginx `stream` mTLS pair, a Caddy mTLS pair, or a Trellis sidecar pair. Each one
 * exposes the addresses the load generator dials (a TCP port and an HTTP port, or only the kinds it can
 * serve) and the pids of its sidecars, so the runner can measure every pair the same way without knowing
 * what is inside.
 */
import type { Address } from './ports.js';
import type { BenchPki } from './pki.js';
import type { ProcessGroup } from './processes.js';

/** `trellis-b` is the Trellis pair run from another build (`--compare PATH`), for an interleaved A/B in one run. */
export const PAIR_NAMES = ['direct', 'haproxy', 'nginx-stream', 'caddy', 'trellis', 'trellis-b', 'trellis-ingress', 'haproxy-sni-ingress'] as const;
export type PairName = (typeof PAIR_NAMES)[number];

/**
 * What `npm run bench` runs without `--pairs`. The nginx, Caddy and ingress pairs are left out: each adds
 * about 7 minutes to a default run (12 scenarios × 3 rounds × 11 s; `--help` prints the estimate). Ask for
 * them with `--pairs direct,haproxy,nginx-stream,caddy,trellis`.
 */
export const DEFAULT_PAIR_NAMES: readonly PairName[] = Object.freeze(['direct', 'haproxy', 'trellis'] as const);

export const PAIR_TITLES: Readonly<Record<PairName, string>> = Object.freeze({
  direct: 'no proxy',
  haproxy: 'HAProxy pair',
  'nginx-stream': 'nginx stream pair',
  caddy: 'Caddy pair',
  trellis: 'Trellis pair',
  'trellis-b': 'Trellis pair B',
  'trellis-ingress': 'Trellis pair via Trellis ingress',
  'haproxy-sni-ingress': 'Trellis pair via HAProxy SNI ingress',
});

/**
 * A port kind as the mesh declares it: `tcp` forwards bytes, `http` routes each request, `http2` each h2c
 * stream, `grpc` each gRPC call (the streaming scenarios' grpc-js backend, bench/grpc-stream-server.ts).
 */
export type PortKind = 'tcp' | 'http' | 'http2' | 'grpc';
export const PORT_KINDS: readonly PortKind[] = Object.freeze(['tcp', 'http', 'http2', 'grpc'] as const);

export interface Sidecar {
  /** "client" (the caller's side) or "server" (the destination's side). */
  readonly role: string;
  readonly pid: number;
}

export interface RunningPair {
  readonly name: PairName;
  /**
   * Where the load generator connects for each port kind. A pair that cannot serve a kind (Caddy has no
   * L4 proxy in Debian's build, so no `tcp` port) leaves it out: the runner skips those scenarios for
   * it and the report prints "n/a".
   */
  readonly entry: Readonly<Partial<Record<PortKind, Address>>>;
  readonly sidecars: readonly Sidecar[];
  /** A one-line description of the configuration, recorded in the results. */
  readonly description: string;
  /** Throws with the sidecar's last words when one of them has died. */
  assertAlive(): void;
  stop(): Promise<void>;
}

export interface PairContext {
  /** A private directory for this pair's config files, removed with the run. */
  readonly dir: string;
  /** The backend's port for each port kind (the same nginx behind both). */
  readonly backend: Readonly<Record<PortKind, Address>>;
  readonly pki: BenchPki;
  readonly processes: ProcessGroup;
  /** Absolute path of the built `trellis` CLI (dist/cli/main.js). */
  readonly trellisCli: string;
  /** `--compare PATH`: the other build's CLI, run by the `trellis-b` pair. */
  readonly compareCli?: string;
}

export interface PairFactory {
  readonly name: PairName;
  start(context: PairContext): Promise<RunningPair>;
}

/** The port kinds a pair serves, in PORT_KINDS order. */
export function servedPortKinds(pair: Pick<RunningPair, 'entry'>): PortKind[] {
  return PORT_KINDS.filter((kind) => pair.entry[kind] !== undefined);
}
