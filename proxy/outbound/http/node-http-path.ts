/**
 * The outbound HTTP path for what the fast path (app-connection.ts) does not carry, and for every request
 * when there are no lanes: node:http (llhttp) parses the app's requests under explicit limits, and each
 * goes on as an HTTP/2 request on the tunnel (`forwardHttpRequest`, exchange.ts) or, for an Upgrade, as a
 * tunnelled CONNECT stream (`forwardHttpUpgrade`, upgrade.ts).
 *
 * Connections arrive from the listener (listener.ts) in one direction only: at accept when there are no
 * lanes, or from the fast path at the first request it does not carry, with the bytes it read but did not
 * handle. This server never listens itself.
 *
 * Behaviour an app sees, as without a mesh: keep-alive (idle connections closed after
 * `keepAliveTimeoutMs`), `Connection: close` and HTTP/1.0 honoured, chunked bodies both ways, HEAD and
 * 204/304 without bodies. Pipelined requests are served the way node:http serves them: parsed and forwarded
 * as they arrive (each balanced independently), responses written back strictly in request order; a later
 * response waits, bounded by its stream's flow-control window, until the earlier ones are written.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { nextCorrelationId } from '../../core/correlation.js';
import { failureBody, failureHeaders, HTTP_FAILURES, HttpFailure } from '../../http/errors.js';
import type { OutboundRoute } from '../route.js';
import type { OutboundHttpDeps } from './deps.js';
import { forwardHttpRequest } from './exchange.js';
import { forwardHttpUpgrade } from './upgrade.js';

export interface NodeHttpPath {
  /** Serves an app connection from its first byte (the listener without lanes). */
  serve(socket: Socket): void;
  /**
   * Serves an app connection the fast path hands over at a request it does not carry. `pending`: the bytes
   * it read but did not handle (that request, and any after it); `route`: the destination it last used,
   * kept for the connection's further requests.
   */
  takeOver(socket: Socket, pending: Buffer | undefined, route: OutboundRoute | undefined): void;
  /** Closes the connections it serves that are idle between requests. */
  closeIdleConnections(): void;
  /** Stops node:http's timeout checker (the connections are ended by the listener). */
  close(): void;
}

/** `routeOf`: the listener's route for a connection (a captured connection's own, else the listener's current). */
export function createNodeHttpPath(deps: OutboundHttpDeps, routeOf: (socket: Socket) => OutboundRoute | undefined): NodeHttpPath {
  const limits = deps.limits;
  const pinned = new WeakMap<Socket, OutboundRoute>();
  let tracking = false;
  const server: Server = createServer({
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.min(5_000, limits.headersTimeoutMs),
    noDelay: true,
  });
  const route = (socket: Socket): OutboundRoute | undefined => pinned.get(socket) ?? routeOf(socket);

  const onRequest = (req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void => {
    const to = route(req.socket);
    if (to === undefined) refuseNoRoute(res, deps);
    else forwardHttpRequest(req, res, to, deps, expectContinue);
  };
  server.on('request', (req: IncomingMessage, res: ServerResponse) => onRequest(req, res, false));
  // Registering this stops node from answering 100 itself: the destination app decides (see outbound/http/exchange.ts).
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => onRequest(req, res, true));
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const to = route(socket);
    if (to === undefined) {
      socket.on('error', () => undefined);
      socket.end('HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    forwardHttpUpgrade(req, socket, head, to, deps);
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

  const startTracking = (): void => {
    if (tracking) return;
    // node:http checks headersTimeout/requestTimeout from a timer it starts on 'listening'; this server never
    // listens (connections are handed to it), so start that timer explicitly (close() stops it).
    tracking = true;
    server.emit('listening');
  };

  return {
    serve(socket: Socket): void {
      startTracking();
      server.emit('connection', socket);
    },
    takeOver(socket: Socket, pending: Buffer | undefined, last: OutboundRoute | undefined): void {
      if (last !== undefined && !pinned.has(socket)) pinned.set(socket, last);
      startTracking();
      server.emit('connection', socket);
      if (pending !== undefined && pending.length > 0) socket.emit('data', pending);
      socket.resume();
    },
    closeIdleConnections(): void {
      server.closeIdleConnections();
    },
    close(): void {
      if (tracking) server.close();
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
