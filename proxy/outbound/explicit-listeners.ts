/**
 * Explicit-mode capture: one local port per upstream service port (`127.0.0.1:PORT` → service:port), for
 * workloads where iptables redirection is not possible.
 *
 * `apply` reconciles the listeners with config: a listener whose address and protocol are unchanged stays
 * open (its destination is re-read from the current config for every new connection), removed listeners
 * stop accepting while their open connections carry on, new ones are bound. Ports declared `http` are
 * handed to the HTTP path when one is given; without it they are carried as TCP (correct, but balanced per
 * connection instead of per request).
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { OutboundListener } from '../../api/data-plane.js';
import type { ProxyLimits } from '../core/limits.js';
import { listenOn } from '../core/listen.js';
import type { ProxyMetrics } from '../core/metrics.js';
import type { ConnectionBudget } from './connection-budget.js';
import { resolveRoute, type OutboundRoute, type UpstreamIndex } from './outbound-route.js';

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
}

interface Entry {
  readonly key: string;
  readonly protocol: 'tcp' | 'http';
  /** Read by the listener's resolver for every connection, so an in-place update retargets new connections. */
  readonly ref: { spec: OutboundListener };
  readonly listener: LocalListener;
}

export class ExplicitListeners {
  private readonly entries = new Map<string, Entry>();
  private upstreams: UpstreamIndex = new Map();

  constructor(private readonly deps: ExplicitListenerDeps) {}

  /**
   * Binds, keeps or closes listeners so they match `specs`. Throws (after closing what it opened in this
   * call) when a new listener cannot bind, so a config is applied whole or not at all for new ports.
   */
  async apply(specs: readonly OutboundListener[], upstreams: UpstreamIndex): Promise<void> {
    this.upstreams = upstreams;
    const wanted = new Map<string, OutboundListener>();
    for (const spec of specs) wanted.set(`${spec.bindAddress}:${spec.localPort}`, spec);
    const opened: Entry[] = [];
    try {
      for (const [key, spec] of wanted) {
        const route = resolveRoute(upstreams, spec.service, spec.namespace, spec.port);
        const protocol = route?.protocol === 'http' && this.deps.http !== undefined ? 'http' : 'tcp';
        const existing = this.entries.get(key);
        if (existing !== undefined && existing.protocol === protocol) {
          existing.ref.spec = spec;
          continue;
        }
        if (existing !== undefined) {
          this.entries.delete(key);
          await existing.listener.close();
        }
        const entry = await this.open(key, spec, protocol);
        opened.push(entry);
        this.entries.set(key, entry);
      }
    } catch (err) {
      for (const e of opened) {
        this.entries.delete(e.key);
        await e.listener.close();
      }
      throw err;
    }
    for (const [key, entry] of [...this.entries]) {
      if (wanted.has(key)) continue;
      this.entries.delete(key);
      await entry.listener.close();
    }
  }

  addresses(): { readonly spec: OutboundListener; readonly address: AddressInfo | undefined }[] {
    return [...this.entries.values()].map((e) => ({ spec: e.ref.spec, address: e.listener.address() }));
  }

  async close(graceMs?: number): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map((e) => e.listener.close(graceMs)));
  }

  private async open(key: string, spec: OutboundListener, protocol: 'tcp' | 'http'): Promise<Entry> {
    const ref = { spec };
    const resolve = (): OutboundRoute | undefined => resolveRoute(this.upstreams, ref.spec.service, ref.spec.namespace, ref.spec.port);
    let listener: LocalListener;
    if (protocol === 'http' && this.deps.http !== undefined) {
      listener = await this.deps.http(spec, resolve);
    } else {
      listener = await this.openTcp(spec, resolve);
    }
    this.deps.logger.info({ listener: key, destination: `${spec.namespace}/${spec.service}:${spec.port}`, protocol }, 'outbound listener bound');
    return { key, protocol, ref, listener };
  }

  private openTcp(spec: OutboundListener, resolve: () => OutboundRoute | undefined): Promise<LocalListener> {
    const server: Server = createServer({ allowHalfOpen: true, noDelay: true });
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
