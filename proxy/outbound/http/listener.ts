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
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { OutboundListener } from '../../../api/data-plane.js';
import { listenOn } from '../../core/listen.js';
import type { OutboundHttpDeps } from './deps.js';
import type { OutboundRoute } from '../route.js';
import { Http1AppConnection, type FastPathDeps } from './app-connection.js';
import type { LanePool } from './lane-pool.js';
import { unlimitedBudget, type ConnectionBudget } from '../connection-budget.js';
import { createNodeHttpPath, type NodeHttpPath } from './node-http-path.js';
import { detectClientProtocol } from '../../http2/preface.js';
import { isHttp2Only } from '../../../api/port-protocol.js';
import { refuseHttp1OnHttp2Port, type OutboundHttp2Server } from '../http2/app-server.js';

export interface OutboundHttpListenerOptions {
  readonly deps: OutboundHttpDeps;
  /** Where connections accepted by `listen` go; read for every request. */
  readonly resolve?: () => OutboundRoute | undefined;
  /** HTTP/1.1 lanes to other sidecars: the fast path. Without it every request goes through node:http. */
  readonly lanes?: LanePool;
  /** Names the listener in metrics and logs (`namespace/service:port`, or `capture`). */
  readonly name?: string;
  /**
   * HTTP/2 apps (prior knowledge, h2c): a connection opening with the HTTP/2 preface goes here; on a
   * port declared `http2` or `grpc` an HTTP/1.1 client is told 505 (outbound/http2/app-server.ts).
   */
  readonly http2?: OutboundHttp2Server;
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
  return new AppHttpListener(options);
}

class AppHttpListener implements OutboundHttpListener {
  private readonly deps: OutboundHttpDeps;
  /** A captured connection's own route (explicit mode resolves per request). */
  private readonly routes = new WeakMap<Socket, OutboundRoute>();
  private readonly sockets = new Set<Socket>();
  private readonly fast = new Set<Http1AppConnection>();
  private readonly budget: ConnectionBudget;
  private readonly name: string;
  private readonly fastDeps: FastPathDeps | undefined;
  private readonly nodeHttp: NodeHttpPath;
  private readonly entry: NetServer;
  private connections = 0;
  private closing = false;
  private onDrained: (() => void) | undefined;

  constructor(private readonly options: OutboundHttpListenerOptions) {
    this.deps = options.deps;
    this.budget = options.deps.connections ?? unlimitedBudget();
    this.name = options.name ?? 'http';
    this.fastDeps = options.lanes === undefined ? undefined : fastPathDeps(options.deps, options.lanes);
    this.nodeHttp = createNodeHttpPath(options.deps, this.routeOf);
    // 64 KiB write buffer per app socket (16 KiB default): room for a turn's coalesced response chunks
    // (outbound/http/lane-exchange.ts); with 16 KiB the corked socket pauses the lane every chunk or two.
    this.entry = createNetServer({ allowHalfOpen: true, noDelay: true, highWaterMark: 64 * 1024 }, this.accept);
  }

  private readonly routeOf = (socket: Socket): OutboundRoute | undefined => this.routes.get(socket) ?? this.options.resolve?.();

  /** Every app connection enters here, accepted by `listen` or handed over by capture. */
  private readonly accept = (socket: Socket): void => {
    socket.on('error', () => undefined);
    if (this.closing || !this.admit()) {
      socket.destroy();
      return;
    }
    this.connections += 1;
    this.sockets.add(socket);
    let conn: Http1AppConnection | undefined;
    socket.once('close', () => {
      this.budget.release();
      this.connections -= 1;
      this.sockets.delete(socket);
      if (conn !== undefined) this.fast.delete(conn);
      if (this.connections === 0) this.onDrained?.();
    });
    const serveHttp1 = (): void => {
      conn = this.fastDeps === undefined ? undefined : new Http1AppConnection(socket, () => this.routeOf(socket), this.fastDeps, this.nodeHttp);
      if (conn === undefined) this.nodeHttp.serve(socket);
      else this.fast.add(conn);
    };
    const h2 = this.options.http2;
    if (h2 === undefined) {
      serveHttp1();
      return;
    }
    // A connection that says nothing is closed after the keep-alive timeout, as an idle HTTP/1.1 one always was.
    detectClientProtocol(socket, this.deps.limits.keepAliveTimeoutMs, (protocol) => {
      if (protocol === 'h2') h2.handle(socket, () => this.routeOf(socket));
      else if (isHttp2Only(this.routeOf(socket)?.protocol ?? 'http')) refuseHttp1OnHttp2Port(socket);
      else {
        serveHttp1();
        socket.resume();
      }
    });
  };

  /** The listener's cap, then the sidecar's: a place is taken from the budget, or the refusal counted. */
  private admit(): boolean {
    const limits = this.deps.limits;
    const reason = this.connections >= limits.maxConnections ? 'listener-limit' : this.budget.take() ? undefined : 'sidecar-limit';
    if (reason === undefined) return true;
    this.budget.refused(this.deps.metrics, this.deps.logger, this.name, reason, reason === 'listener-limit' ? limits.maxConnections : this.budget.max);
    return false;
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return listenOn(this.entry, host, port, 'outbound HTTP', this.deps.logger);
  }

  handleConnection(socket: Socket, route: OutboundRoute): void {
    this.routes.set(socket, route);
    this.accept(socket);
  }

  address(): AddressInfo | undefined {
    const a = this.entry.address();
    return a !== null && typeof a === 'object' ? a : undefined;
  }

  connectionCount(): number {
    return this.connections;
  }

  close(graceMs = 30_000): Promise<void> {
    this.closing = true;
    if (this.entry.listening) this.entry.close();
    // Stops node:http's timeout checker; the connections it serves are ended below.
    this.nodeHttp.close();
    this.nodeHttp.closeIdleConnections();
    for (const conn of this.fast) conn.drain();
    this.options.http2?.drain();
    return new Promise((resolve) => {
      if (this.connections === 0) {
        resolve();
        return;
      }
      const timer = setTimeout(() => {
        for (const socket of this.sockets) socket.destroy();
      }, graceMs);
      timer.unref();
      this.onDrained = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

/** What the fast path reads, frozen once per listener: its parser limits follow the listener's. */
function fastPathDeps(deps: OutboundHttpDeps, lanes: LanePool): FastPathDeps {
  const limits = deps.limits;
  return Object.freeze({
    http: deps,
    lanes,
    headLimits: Object.freeze({ maxHeadBytes: limits.maxHeaderBytes, maxHeaderCount: MAX_HEADER_FIELDS }),
    bodyLimits: Object.freeze({ maxChunkLineBytes: 4096, maxTrailerBytes: limits.maxHeaderBytes }),
  });
}

/**
 * The sidecar's factory for explicit-mode HTTP listeners (`ExplicitListenerDeps.http`): binds
 * `spec.bindAddress:spec.localPort` and serves it with the route `resolve` returns per request.
 */
export function outboundHttpListenerFactory(deps: OutboundHttpDeps, lanes?: LanePool, http2?: OutboundHttp2Server): (spec: OutboundListener, resolve: () => OutboundRoute | undefined) => Promise<OutboundHttpListener> {
  return async (spec, resolve) => {
    const listener = createOutboundHttpListener({ deps, resolve, lanes, http2, name: `${spec.namespace}/${spec.service}:${spec.port}` });
    await listener.listen(spec.localPort, spec.bindAddress);
    return listener;
  };
}
