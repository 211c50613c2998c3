/**
 * The outbound sidecar's HTTP/2 server for local apps (prior knowledge, h2c): connections arrive already
 * accepted and counted by the HTTP listener (outbound/http/listener.ts), which tells HTTP/2 clients from
 * HTTP/1.1 ones by the preface (http2/preface.ts); each stream is then one request, balanced on its own
 * (outbound/http2/stream-exchange.ts).
 *
 * Limits are the tunnel port's (core/limits.ts): concurrent streams per connection, header list size,
 * stream and connection windows, nghttp2's session memory and its SETTINGS/PING flood limits, and the
 * rapid-reset rule (http2/app-session-guard.ts). Malformed HTTP/2 ends that connection with GOAWAY and
 * harms no other. An idle connection is closed with GOAWAY after the HTTP/1.1 keep-alive timeout.
 */
import { constants as h2, createServer, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { ProxyLimits } from '../../core/limits.js';
import { nextCorrelationId } from '../../core/correlation.js';
import { HTTP_FAILURES, HttpFailure, failureBody, failureHeaders } from '../../http/errors.js';
import { guardAppSession } from '../../http2/app-session-guard.js';
import type { OutboundRoute } from '../route.js';
import type { OutboundHttpDeps } from '../http/deps.js';
import { forwardHttp2Stream } from './stream-exchange.js';

export type AppHttp2Limits = Pick<
  ProxyLimits,
  'maxStreamsPerSession' | 'maxHeaderListSize' | 'streamWindowBytes' | 'sessionWindowBytes' | 'maxSessionMemoryMb' | 'sessionErrorCloseMs' | 'rapidResetMaxResets' | 'rapidResetWindowMs'
>;

export interface OutboundHttp2Server {
  /** Serves a connection that opened with the HTTP/2 preface (paused, its bytes put back). */
  handle(socket: Socket, route: () => OutboundRoute | undefined): void;
  /** Open app HTTP/2 connections. */
  sessionCount(): number;
  /** GOAWAY to every connection: streams in flight finish, new ones are refused. */
  drain(): void;
}

export function createOutboundHttp2Server(deps: OutboundHttpDeps, limits: AppHttp2Limits): OutboundHttp2Server {
  const routes = new WeakMap<ServerHttp2Session, () => OutboundRoute | undefined>();
  const sessions = new Set<ServerHttp2Session>();
  let incoming: { socket: Socket; route: () => OutboundRoute | undefined } | undefined;
  const server: Http2Server = createServer({
    maxSessionMemory: limits.maxSessionMemoryMb,
    maxHeaderListPairs: 256,
    settings: {
      enablePush: false,
      maxConcurrentStreams: limits.maxStreamsPerSession,
      initialWindowSize: limits.streamWindowBytes,
      maxHeaderListSize: limits.maxHeaderListSize,
    },
  });
  // `emit('connection')` creates the session synchronously, so `incoming` names its socket and route.
  server.on('session', (session: ServerHttp2Session) => {
    const from = incoming;
    if (from === undefined) return;
    routes.set(session, from.route);
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('error', noop);
    session.setLocalWindowSize(limits.sessionWindowBytes);
    session.setTimeout(deps.limits.keepAliveTimeoutMs, () => {
      if (!session.closed) session.close();
    });
    guardAppSession(session, from.socket, limits, (reason, detail) => {
      deps.metrics.tunnelErrors.inc({ direction: 'outbound', reason: `app-h2-${reason}` });
      deps.logger.debug({ reason, detail }, 'app HTTP/2 connection ended');
    });
  });
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    // Reset by the app before it reached us (a burst of resets): nothing to do; the guard counted it.
    if (stream.destroyed || stream.closed) return;
    const route = routes.get(stream.session as ServerHttp2Session)?.();
    if (route === undefined) {
      refuseNoRoute(stream, deps);
      return;
    }
    forwardHttp2Stream(stream, headers, route, deps);
  });
  return Object.freeze({
    handle(socket: Socket, route: () => OutboundRoute | undefined): void {
      incoming = { socket, route };
      try {
        server.emit('connection', socket);
      } finally {
        incoming = undefined;
      }
      // Not resumed: the session reads the bytes put back on its next tick (node:http2 does), then the socket itself.
    },
    sessionCount(): number {
      return sessions.size;
    },
    drain(): void {
      for (const session of sessions) if (!session.closed) session.close();
    },
  });
}

function refuseNoRoute(stream: ServerHttp2Stream, deps: OutboundHttpDeps): void {
  stream.on('error', noop);
  if (stream.destroyed || stream.closed) return;
  const correlationId = nextCorrelationId();
  const failure = new HttpFailure(HTTP_FAILURES.unknownDestination);
  deps.logger.warn({ correlationId, code: failure.code }, 'no upstream in config for this listener; HTTP/2 request refused');
  const body = failureBody(failure, correlationId);
  stream.respond(failureHeaders(failure, correlationId, body, true));
  stream.end(body);
  if (!stream.endAfterHeaders) stream.once('finish', () => stream.close(h2.NGHTTP2_NO_ERROR));
}

/** An HTTP/1.1 client on a port declared `http2` or `grpc`: told so in HTTP/1.1, then the connection closes. */
export function refuseHttp1OnHttp2Port(socket: Socket): void {
  const failure = new HttpFailure(HTTP_FAILURES.notHttp2);
  const body = failureBody(failure, nextCorrelationId());
  socket.end(`HTTP/1.1 ${failure.status} HTTP Version Not Supported\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\ntrellis-error: ${failure.code}\r\n\r\n${body}`);
  socket.resume();
}

function noop(): void {}
