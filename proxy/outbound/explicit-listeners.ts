/**
 * Explicit-mode capture: one local port per upstream service port (`127.0.0.1:PORT` → service:port), for
 * workloads where iptables redirection is not possible.
 *
 * `apply` reconciles the listeners with config: a listener whose address and protocol are unchanged stays
 * open (its destination is re-read from the current config for every new connection), removed listeners
 * stop accepting while their open connections carry on, new ones are bound. Ports declared `http` are
 * handed to the HTTP path when one is given; without it they are carried as TCP (correct, but balanced per
 * connection instead of per request).
 *
 * A port that cannot be bound (another process holds it, the address is not local) never takes the others
 * down: it is retried with backoff (common/backoff.ts) while the rest serve, logged at warn with what to do,
 * reported by `failures()` (the sidecar's readiness names it) and counted in
 * `trellis_outbound_listeners_failing`. (Failing the whole config for one port unbound every listener of
 * the agent, and readiness stayed true.)
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Gauge } from 'prom-client';
import type { Logger } from 'pino';
import { backoffDelay, type BackoffOptions } from '../../common/backoff.js';
import type { OutboundListener } from '../../api/data-plane.js';
import type { ProxyLimits } from '../core/limits.js';
import { listenOn } from '../core/listen.js';
import type { ProxyMetrics } from '../core/metrics.js';
import type { ConnectionBudget } from './connection-budget.js';
import { resolveRoute, type OutboundRoute, type UpstreamIndex } from './route.js';
import { isHttpFamily } from '../../api/port-protocol.js';

/** A bound local listener, whichever path (TCP here, or HTTP) serves it. */
export interface LocalListener {
  address(): AddressInfo | undefined;
  /** Stops accepting; open connections may finish within `graceMs` (the listener's default when absent). */
  close(graceMs?: number): Promise<void>;
}

/** Builds the HTTP path's listener for an `http` service port (the HTTP helper's `createOutboundHttpListener`). */
export type OutboundHttpListenerFactory = (listener: OutboundListener, resolve: () => OutboundRoute | undefined) => Promise<LocalListener>;

export interface ExplicitListenerDeps {
  readonly limits: ProxyLimits;
  readonly metrics: ProxyMetrics;
  readonly logger: Logger;
  /** Handles one accepted app connection whose route is resolved. */
  readonly forward: (socket: Socket, route: OutboundRoute) => void;
  readonly http?: OutboundHttpListenerFactory;
  /** The sidecar-wide cap on app connections, shared with the HTTP listeners. */
  readonly connections: ConnectionBudget;
  /** Delays between attempts to bind a port that could not be bound (default 1 s doubling to 30 s). */
  readonly bindRetry?: BackoffOptions;
}

const DEFAULT_BIND_RETRY: BackoffOptions = Object.freeze({ initialMs: 1_000, maxMs: 30_000 });

/** A listener that could not bind, as readiness reports it. */
export interface ListenerFailure {
  readonly spec: OutboundListener;
  readonly reason: string;
  readonly attempts: number;
}

interface Entry {
  readonly key: string;
  readonly protocol: 'tcp' | 'http';
  /** Read by the listener's resolver for every connection, so an in-place update retargets new connections. */
  readonly ref: { spec: OutboundListener };
  /** Undefined while the port cannot be bound (then `failing` says why and when it is tried again). */
  listener: LocalListener | undefined;
  failing: { reason: string; attempts: number; timer: NodeJS.Timeout } | undefined;
  removed: boolean;
}

export class ExplicitListeners {
  private readonly entries = new Map<string, Entry>();
  private upstreams: UpstreamIndex = new Map();

  constructor(private readonly deps: ExplicitListenerDeps) {
    const failing = (): number => this.failures().length;
    new Gauge({
      name: 'trellis_outbound_listeners_failing',
      help: 'Outbound listeners of the config that cannot bind their port (retried with backoff).',
      registers: [deps.metrics.registry],
      collect(): void {
        this.set(failing());
      },
    });
  }

  /**
   * Binds, keeps or closes listeners so they match `specs`. Never rejects for a port that cannot be bound:
   * that listener is retried with backoff and reported by `failures()`, and every other one serves.
   */
  async apply(specs: readonly OutboundListener[], upstreams: UpstreamIndex): Promise<void> {
    this.upstreams = upstreams;
    const wanted = new Map<string, OutboundListener>();
    for (const spec of specs) wanted.set(listenerKey(spec), spec);
    // Taken out of the map before any wait, so an apply that starts while these drain sees them gone
    // (and a key it binds again is never deleted by this one); they drain side by side, and new listeners
    // are bound meanwhile (a removed listener's key is never a new one's: a fixed port is its own key).
    const gone: Entry[] = [];
    for (const [key, entry] of [...this.entries]) {
      if (wanted.has(key)) continue;
      this.entries.delete(key);
      gone.push(entry);
    }
    const draining = Promise.all(gone.map((e) => this.discard(e)));
    for (const [key, spec] of wanted) {
      const route = resolveRoute(upstreams, spec.service, spec.namespace, spec.port);
      const protocol = route !== undefined && isHttpFamily(route.protocol) && this.deps.http !== undefined ? 'http' : 'tcp';
      const existing = this.entries.get(key);
      if (existing !== undefined && existing.protocol === protocol) {
        existing.ref.spec = spec;
        continue;
      }
      if (existing !== undefined) {
        this.entries.delete(key);
        await this.discard(existing);
      }
      const entry: Entry = { key, protocol, ref: { spec }, listener: undefined, failing: undefined, removed: false };
      this.entries.set(key, entry);
      await this.bind(entry);
    }
    await draining;
  }

  /** Listeners of the config whose port cannot be bound now. */
  failures(): ListenerFailure[] {
    const out: ListenerFailure[] = [];
    for (const e of this.entries.values()) if (e.failing !== undefined) out.push({ spec: e.ref.spec, reason: e.failing.reason, attempts: e.failing.attempts });
    return out;
  }

  addresses(): { readonly spec: OutboundListener; readonly address: AddressInfo | undefined }[] {
    return [...this.entries.values()].map((e) => ({ spec: e.ref.spec, address: e.listener?.address() }));
  }

  async close(graceMs?: number): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map((e) => this.discard(e, graceMs)));
  }

  private async discard(entry: Entry, graceMs?: number): Promise<void> {
    entry.removed = true;
    if (entry.failing !== undefined) clearTimeout(entry.failing.timer);
    entry.failing = undefined;
    await entry.listener?.close(graceMs);
  }

  /** One attempt to bind `entry`'s port; on failure the next is scheduled (backoff) and the reason kept. */
  private async bind(entry: Entry): Promise<void> {
    const { spec } = entry.ref;
    let listener: LocalListener;
    try {
      listener = await this.open(entry);
    } catch (err) {
      if (entry.removed) return;
      const attempts = (entry.failing?.attempts ?? 0) + 1;
      const delay = backoffDelay(attempts - 1, this.deps.bindRetry ?? DEFAULT_BIND_RETRY);
      const reason = bindFailureReason(spec, err);
      const timer = setTimeout(() => void this.bind(entry), delay);
      timer.unref();
      entry.failing = { reason, attempts, timer };
      const fields = { listener: entry.key, destination: `${spec.namespace}/${spec.service}:${spec.port}`, attempts, retryInMs: delay };
      if (attempts === 1) this.deps.logger.warn(fields, `outbound listener cannot bind: ${reason}; retrying with backoff`);
      else this.deps.logger.debug(fields, 'outbound listener still cannot bind');
      return;
    }
    if (entry.removed) {
      await listener.close();
      return;
    }
    if (entry.failing !== undefined) this.deps.logger.info({ listener: entry.key, attempts: entry.failing.attempts }, 'outbound listener bound after retrying');
    entry.failing = undefined;
    entry.listener = listener;
  }

  private async open(entry: Entry): Promise<LocalListener> {
    const { key, ref, protocol } = entry;
    const spec = ref.spec;
    const resolve = (): OutboundRoute | undefined => resolveRoute(this.upstreams, ref.spec.service, ref.spec.namespace, ref.spec.port);
    const listener = protocol === 'http' && this.deps.http !== undefined ? await this.deps.http(spec, resolve) : await this.openTcp(spec, resolve);
    this.deps.logger.info({ listener: key, destination: `${spec.namespace}/${spec.service}:${spec.port}`, protocol }, 'outbound listener bound');
    return listener;
  }

  private openTcp(spec: OutboundListener, resolve: () => OutboundRoute | undefined): Promise<LocalListener> {
    // 64 KiB write buffer per app socket (16 KiB default): room for a turn's coalesced chunks (core/splice.ts).
    const server: Server = createServer({ allowHalfOpen: true, noDelay: true, highWaterMark: 64 * 1024 });
    const { limits, metrics, logger, connections } = this.deps;
    const name = `${spec.namespace}/${spec.service}:${spec.port}`;
    server.maxConnections = limits.maxOutboundConnections;
    server.on('drop', () => connections.refused(metrics, logger, name, 'listener-limit', limits.maxOutboundConnections));
    server.on('connection', (socket: Socket) => {
      if (!connections.take()) {
        connections.refused(metrics, logger, name, 'sidecar-limit', connections.max);
        socket.on('error', () => undefined);
        socket.destroy();
        return;
      }
      socket.once('close', () => connections.release());
      const route = resolve();
      if (route === undefined) {
        this.deps.metrics.tcpConnections.inc({ direction: 'outbound', source: 'local', destination: `${spec.namespace}/${spec.service}`, result: 'no-route' });
        this.deps.logger.warn({ destination: `${spec.namespace}/${spec.service}:${spec.port}` }, 'no upstream in config for this listener; connection closed');
        socket.on('error', () => undefined);
        socket.destroy();
        return;
      }
      this.deps.forward(socket, route);
    });
    return listenOn(server, spec.bindAddress, spec.localPort, `${spec.namespace}/${spec.service}`, this.deps.logger).then(() => ({
      address: () => {
        const a = server.address();
        return a !== null && typeof a === 'object' ? a : undefined;
      },
      close: () => new Promise<void>((done) => {
        // close() stops accepting; connections already accepted finish on their own.
        server.close(() => undefined);
        done();
      }),
    }));
  }
}

/**
 * One entry per bound address; port 0 (any free port: the gateway's in-process listeners, one per
 * destination) is told apart by its destination, since the kernel picks the port.
 */
function listenerKey(spec: OutboundListener): string {
  return spec.localPort === 0 ? `${spec.bindAddress}:0/${spec.namespace}/${spec.service}:${spec.port}` : `${spec.bindAddress}:${spec.localPort}`;
}

/** What an operator reads: which port, for which upstream, why, and what to do about it. */
function bindFailureReason(spec: OutboundListener, err: unknown): string {
  const cause = (err as { cause?: { code?: string } }).cause;
  const code = cause?.code ?? (err as { code?: string }).code;
  const where = `port ${spec.localPort} on ${spec.bindAddress} for upstream ${spec.namespace}/${spec.service}`;
  if (code === 'EADDRINUSE') return `${where} is in use by another process; free it or choose another --upstream port`;
  if (code === 'EADDRNOTAVAIL') return `${where}: ${spec.bindAddress} is not an address of this host; choose a local bind address`;
  if (code === 'EACCES') return `${where}: permission denied (ports below 1024 need privileges); choose a higher --upstream port`;
  return `${where}: ${(err as Error).message}`;
}
