/**
 * The outbound sidecar's HTTP/1.1 listener, where every app connection enters the outbound HTTP path. The
 * flow runs one way, and the files follow it:
 *
 *   listener.ts        accept (a local port in explicit mode, or handed over by capture), admission
 *      │               (the listener's and the sidecar's connection caps)
 *      ├─ with lanes ─ app-connection.ts   the fast path: requests framed here, each on a lane-exchange.ts
 *      │                     │             to a kept-alive HTTP/1.1 lane between sidecars
 *      │                     └─ at a request it does not carry (Upgrade, Expect: 100-continue, HTTP/1.0):
 *      └─ without ──────────── node-http-path.ts   node:http, each request as HTTP/2 (exchange.ts) or a
 *                                                  tunnelled upgrade (upgrade.ts)
 *
 * Explicit mode re-resolves the route per request, so a config change retargets open keep-alive connections;
 * a captured connection keeps the destination it was redirected to.
 */
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import type { OutboundListener } from '../../../api/data-plane.js';
import { listenOn } from '../../core/listen.js';
import type { OutboundHttpDeps } from './deps.js';
import type { OutboundRoute } from '../route.js';
import { Http1AppConnection, type FastPathDeps } from './app-connection.js';
import type { LanePool } from './lane-pool.js';
import { unlimitedBudget } from '../connection-budget.js';
import { createNodeHttpPath } from './node-http-path.js';

export interface OutboundHttpListenerOptions {
  readonly deps: OutboundHttpDeps;
  /** Where connections accepted by `listen` go; read for every request. */
  readonly resolve?: () => OutboundRoute | undefined;
  /** HTTP/1.1 lanes to other sidecars: the fast path. Without it every request goes through node:http. */
  readonly lanes?: LanePool;
  /** Names the listener in metrics and logs (`namespace/service:port`, or `capture`). */
  readonly name?: string;
}

/** Header fields per request head on the fast path (node:http's default is 2,000; 256 is plenty for an app). */
const MAX_HEADER_FIELDS = 256;

export interface OutboundHttpListener {
  /** Binds the local port (explicit mode). */
  listen(port: number, host: string): Promise<AddressInfo>;
  /** Serves an already accepted app connection whose destination is known (transparent capture). */
  handleConnection(socket: Socket, route: OutboundRoute): void;
  address(): AddressInfo | undefined;
  /** App connections open now. */
  connectionCount(): number;
  /**
   * Stops accepting and closes idle kept-alive connections at once; requests in flight may finish
   * within `graceMs` (default 30 s), then every remaining connection is closed.
   */
  close(graceMs?: number): Promise<void>;
}

export function createOutboundHttpListener(options: OutboundHttpListenerOptions): OutboundHttpListener {
  const { deps } = options;
  const limits = deps.limits;
  const routes = new WeakMap<Socket, OutboundRoute>();
  const sockets = new Set<Socket>();
  const fast = new Set<Http1AppConnection>();
  const budget = deps.connections ?? unlimitedBudget();
  const name = options.name ?? 'http';
  let connections = 0;
  let closing = false;
  let onDrained: (() => void) | undefined;
  const fastDeps: FastPathDeps | undefined =
    options.lanes === undefined
      ? undefined
      : Object.freeze({
          http: deps,
          lanes: options.lanes,
          headLimits: Object.freeze({ maxHeadBytes: limits.maxHeaderBytes, maxHeaderCount: MAX_HEADER_FIELDS }),
          bodyLimits: Object.freeze({ maxChunkLineBytes: 4096, maxTrailerBytes: limits.maxHeaderBytes }),
        });

  const routeOf = (socket: Socket): OutboundRoute | undefined => routes.get(socket) ?? options.resolve?.();
  const nodeHttp = createNodeHttpPath(deps, routeOf);

  /** Every app connection enters here, accepted by `listen` or handed over by capture. */
  const accept = (socket: Socket): void => {
    socket.on('error', () => undefined);
    if (closing) {
      socket.destroy();
      return;
    }
    const reason = connections >= limits.maxConnections ? 'listener-limit' : budget.take() ? undefined : 'sidecar-limit';
    if (reason !== undefined) {
      budget.refused(deps.metrics, deps.logger, name, reason, reason === 'listener-limit' ? limits.maxConnections : budget.max);
      socket.destroy();
      return;
    }
    connections += 1;
    sockets.add(socket);
    const conn = fastDeps === undefined ? undefined : new Http1AppConnection(socket, () => routeOf(socket), fastDeps, nodeHttp);
    socket.once('close', () => {
      budget.release();
      connections -= 1;
      sockets.delete(socket);
      if (conn !== undefined) fast.delete(conn);
      if (connections === 0) onDrained?.();
    });
    if (conn === undefined) nodeHttp.serve(socket);
    else fast.add(conn);
  };
  // 64 KiB write buffer per app socket (16 KiB default): room for a turn's coalesced response chunks
  // (outbound/http/lane-exchange.ts); with 16 KiB the corked socket pauses the lane every chunk or two.
  const entry = createNetServer({ allowHalfOpen: true, noDelay: true, highWaterMark: 64 * 1024 }, accept);

  return {
    listen(port: number, host: string): Promise<AddressInfo> {
      return listenOn(entry, host, port, 'outbound HTTP', deps.logger);
    },
    handleConnection(socket: Socket, route: OutboundRoute): void {
      routes.set(socket, route);
      accept(socket);
    },
    address(): AddressInfo | undefined {
      const a = entry.address();
      return a !== null && typeof a === 'object' ? a : undefined;
    },
    connectionCount(): number {
      return connections;
    },
    close(graceMs = 30_000): Promise<void> {
      closing = true;
      if (entry.listening) entry.close();
      // Stops node:http's timeout checker; the connections it serves are ended below.
      nodeHttp.close();
      nodeHttp.closeIdleConnections();
      for (const conn of fast) conn.drain();
      return new Promise((resolve) => {
        if (connections === 0) {
          resolve();
          return;
        }
        const timer = setTimeout(() => {
          for (const socket of sockets) socket.destroy();
        }, graceMs);
        timer.unref();
        onDrained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    },
  };
}

/**
 * The sidecar's factory for explicit-mode HTTP listeners (`ExplicitListenerDeps.http`): binds
 * `spec.bindAddress:spec.localPort` and serves it with the route `resolve` returns per request.
 */
export function outboundHttpListenerFactory(deps: OutboundHttpDeps, lanes?: LanePool): (spec: OutboundListener, resolve: () => OutboundRoute | undefined) => Promise<OutboundHttpListener> {
  return async (spec, resolve) => {
    const listener = createOutboundHttpListener({ deps, resolve, lanes, name: `${spec.namespace}/${spec.service}:${spec.port}` });
    await listener.listen(spec.localPort, spec.bindAddress);
    return listener;
  };
}
