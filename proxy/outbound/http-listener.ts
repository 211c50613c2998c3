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
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { OutboundListener } from '../../api/data-plane.js';
import { failureBody, failureHeaders, HTTP_FAILURES, HttpFailure } from '../core/http-errors.js';
import { listenOn } from '../core/listen.js';
import { nextCorrelationId } from '../core/correlation.js';
import type { OutboundHttpDeps } from './http-deps.js';
import { forwardHttpRequest } from './http-exchange.js';
import { forwardHttpUpgrade } from './http-upgrade.js';
import type { OutboundRoute } from './outbound-route.js';

export interface OutboundHttpListenerOptions {
  readonly deps: OutboundHttpDeps;
  /** Where connections accepted by `listen` go; read for every request. */
  readonly resolve?: () => OutboundRoute | undefined;
}

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
  let connections = 0;
  let tracking = false;

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
  // Registering this stops node from answering 100 itself: the destination app decides (see http-exchange.ts).
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
  server.on('connection', (socket: Socket) => {
    socket.on('error', () => undefined);
    if (connections >= limits.maxConnections) {
      deps.metrics.tunnelErrors.inc({ direction: 'outbound', reason: 'max-connections' });
      deps.logger.warn({ maxConnections: limits.maxConnections }, 'outbound HTTP connection refused: connection limit reached');
      socket.destroy();
      return;
    }
    connections += 1;
    socket.once('close', () => {
      connections -= 1;
    });
  });
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
      return listenOn(server, host, port, 'outbound HTTP', deps.logger);
    },
    handleConnection(socket: Socket, route: OutboundRoute): void {
      if (!server.listening && !tracking) {
        // node:http checks headersTimeout/requestTimeout from a timer it starts on 'listening'; a server that
        // only receives handed-over connections never listens, so start that timer explicitly (close() stops it).
        tracking = true;
        server.emit('listening');
      }
      routes.set(socket, route);
      server.emit('connection', socket);
    },
    address(): AddressInfo | undefined {
      const a = server.address();
      return a !== null && typeof a === 'object' ? a : undefined;
    },
    connectionCount(): number {
      return connections;
    },
    close(graceMs = 30_000): Promise<void> {
      return new Promise((resolve) => {
        const timer = setTimeout(() => server.closeAllConnections(), graceMs);
        timer.unref();
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        server.closeIdleConnections();
        if (!server.listening && connections === 0) {
          clearTimeout(timer);
          resolve();
        }
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
export function outboundHttpListenerFactory(deps: OutboundHttpDeps): (spec: OutboundListener, resolve: () => OutboundRoute | undefined) => Promise<OutboundHttpListener> {
  return async (spec, resolve) => {
    const listener = createOutboundHttpListener({ deps, resolve });
    await listener.listen(spec.localPort, spec.bindAddress);
    return listener;
  };
}
