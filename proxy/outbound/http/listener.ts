/**
 * The outbound sidecar's HTTP/1.1 listener: parses the app's requests with node:http (llhttp) under
 * explicit limits, and hands each request to `forwardHttpRequest`, which balances it on its own.
 *
 * Connections arrive two ways and are served the same: accepted on a local port (`listen`, explicit mode,
 * the route re-resolved per request so a config change retargets open keep-alive connections), or handed
 * over already accepted with their destination resolved (`handleConnection`, transparent capture).
 *
 * Behaviour an app sees, as without a mesh: keep-alive (idle connections closed after
 * `keepAliveTimeoutMs`), `Connection: close` and HTTP/1.0 honoured, chunked bodies both ways, HEAD and
 * 204/304 without bodies. Pipelined requests are supported the way node:http serves them: requests are
 * parsed and forwarded as they arrive (each balanced independently), and responses are written back
 * strictly in request order; a later response waits, bounded by its stream's flow-control window,
 * until the earlier ones are written.
 *
 * With `lanes`, connections start on the fast path (outbound/http/app-connection.ts: requests framed here and
 * written to kept-alive HTTP/1.1 lanes between sidecars), and only a request the fast path does not carry
 * (Upgrade, Expect: 100-continue, HTTP/1.0) hands its connection over to node:http, from that request on.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import type { OutboundListener } from '../../../api/data-plane.js';
import { failureBody, failureHeaders, HTTP_FAILURES, HttpFailure } from '../../http/errors.js';
import { listenOn } from '../../core/listen.js';
import { nextCorrelationId } from '../../core/correlation.js';
import type { OutboundHttpDeps } from './deps.js';
import { forwardHttpRequest } from './exchange.js';
import { forwardHttpUpgrade } from './upgrade.js';
import type { OutboundRoute } from '../route.js';
import { Http1AppConnection, type FastPathDeps } from './app-connection.js';
import type { LanePool } from './lane-pool.js';
import { unlimitedBudget } from '../connection-budget.js';
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
  const { deps } = options;
  const limits = deps.limits;
  const routes = new WeakMap<Socket, OutboundRoute>();
  const sockets = new Set<Socket>();
  const fast = new Set<Http1AppConnection>();
  const budget = deps.connections ?? unlimitedBudget();
  const name = options.name ?? 'http';
  let connections = 0;
  let tracking = false;
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

  const server: Server = createServer({
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.min(5_000, limits.headersTimeoutMs),
    noDelay: true,
  });

  const routeOf = (socket: Socket): OutboundRoute | undefined => routes.get(socket) ?? options.resolve?.();

  const onRequest = (req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void => {
    const route = routeOf(req.socket);
    if (route === undefined) {
      refuseNoRoute(res, deps);
      return;
    }
    forwardHttpRequest(req, res, route, deps, expectContinue);
  };
  server.on('request', (req: IncomingMessage, res: ServerResponse) => onRequest(req, res, false));
  // Registering this stops node from answering 100 itself: the destination app decides (see outbound/http/exchange.ts).
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => onRequest(req, res, true));
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const route = routeOf(socket);
    if (route === undefined) {
      socket.on('error', () => undefined);
      socket.end('HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    forwardHttpUpgrade(req, socket, head, route, deps);
  });
  const startTracking = (): void => {
    if (server.listening || tracking) return;
    // node:http checks headersTimeout/requestTimeout from a timer it starts on 'listening'; this server never
    // listens (connections are handed to it), so start that timer explicitly (close() stops it).
    tracking = true;
    server.emit('listening');
  };

  /** Takes over a fast-path connection at a request only node:http carries (see the module comment). */
  const fallback = (socket: Socket, pending: Buffer | undefined, route: OutboundRoute | undefined): void => {
    if (route !== undefined && !routes.has(socket)) routes.set(socket, route);
    startTracking();
    server.emit('connection', socket);
    if (pending !== undefined && pending.length > 0) socket.emit('data', pending);
    socket.resume();
  };

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
    let conn: Http1AppConnection | undefined;
    socket.once('close', () => {
      budget.release();
      connections -= 1;
      sockets.delete(socket);
      if (conn !== undefined) fast.delete(conn);
      if (connections === 0) onDrained?.();
    });
    const serveHttp1 = (): void => {
      if (fastDeps === undefined) {
        startTracking();
        server.emit('connection', socket);
      } else {
        conn = new Http1AppConnection(socket, () => routeOf(socket), fastDeps, fallback);
        fast.add(conn);
      }
    };
    const h2 = options.http2;
    if (h2 === undefined) {
      serveHttp1();
      return;
    }
    // A connection that says nothing is closed after the keep-alive timeout, as an idle HTTP/1.1 one always was.
    detectClientProtocol(socket, limits.keepAliveTimeoutMs, (protocol) => {
      if (protocol === 'h2') h2.handle(socket, () => routeOf(socket));
      else if (isHttp2Only(routeOf(socket)?.protocol ?? 'http')) refuseHttp1OnHttp2Port(socket);
      else {
        serveHttp1();
        socket.resume();
      }
    });
  };
  // 64 KiB write buffer per app socket (16 KiB default): room for a turn's coalesced response chunks
  // (outbound/http/lane-exchange.ts); with 16 KiB the corked socket pauses the lane every chunk or two.
  const entry = createNetServer({ allowHalfOpen: true, noDelay: true, highWaterMark: 64 * 1024 }, accept);
  server.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
    // node's answers for bad requests, kept, plus a debug line: the app is local, this is its bug.
    deps.logger.debug({ code: err.code, err: err.message }, 'malformed request from the app');
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    socket.end(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });

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
      if (tracking) server.close();
      server.closeIdleConnections();
      for (const conn of fast) conn.drain();
      options.http2?.drain();
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

function refuseNoRoute(res: ServerResponse, deps: OutboundHttpDeps): void {
  const correlationId = nextCorrelationId();
  const failure = new HttpFailure(HTTP_FAILURES.unknownDestination);
  deps.logger.warn({ correlationId, code: failure.code }, 'no upstream in config for this listener; request refused');
  const body = failureBody(failure, correlationId);
  res.writeHead(failure.status, failureHeaders(failure, correlationId, body, false));
  res.end(body);
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
