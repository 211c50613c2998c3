/**
 * One HTTP request arriving on the tunnel as an HTTP/2 stream, delivered to the local app over a
 * kept-alive HTTP/1.1 connection.
 *
 * Order matters: the request is authorized (and its path normalised) before anything is sent to the app;
 * a refusal is a 403 with the deciding policy and rule, which the caller (an authenticated sidecar) may
 * see. Bodies flow with `pipe()` both ways, so backpressure reaches from the app's socket to the HTTP/2
 * flow-control window and back; `pipe()` rather than `pipeline()` because an app failure must still be
 * able to answer 502/503/504 on the stream instead of having it destroyed under us.
 *
 * Expect: 100-continue is forwarded to the app and its interim 100 relayed, so an app that refuses the
 * request (413, 401, 417) does so before the caller uploads the body. Any other 1xx is relayed too.
 * A stale kept-alive connection (the app closed it as we reused it) is retried once on a new connection
 * when the request has no body, the case node's own docs describe; with a body nothing is retried.
 */
import { request as httpRequest, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { constants as h2, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { nextCorrelationId } from '../../core/correlation.js';
import { DENIED_BY_HEADER } from '../../core/tunnel-protocol.js';
import { acceptableRequestId, connectionTokenList, forbiddenConnectionToken, forbiddenRequestTrailer, h1ResponseToH2, h2RequestToH1, isMeshHeader, responseHasNoBody, REQUEST_ID_HEADER } from '../../http/header-rules.js';
import { appFailure, failureBody, failureHeaders, HTTP_FAILURES, HttpFailure } from '../../http/errors.js';
import { appHttpOptions, authorizeHttp, forwardTarget, httpAuthorizationRequest } from './authorization.js';
import type { InboundHttpContext } from './context.js';
import { deciderOf } from '../authorize.js';
import type { AppHttpPool } from './app-pool.js';
import { handleInboundUpgradeStream } from './upgrade.js';
import { appLocalAddress } from '../app-source.js';
import { recordInboundRequest } from './access.js';
import { cancelStream, closeStream, failStream, pipeUntilCleanEnd } from '../../core/stream-reset.js';

/** Per-request state: one small object, no closures per chunk. */
class InboundExchange {
  status = 0;
  req: ClientRequest | undefined;
  res: IncomingMessage | undefined;
  connected = false;
  timedOut = false;
  finished = false;
  retried = false;
  /** Set while the exchange is open: a policy change re-judges it (TunnelServer.setState). */
  untrack: (() => void) | undefined;
  cutReason: string | undefined;
  connectTimer: NodeJS.Timeout | undefined;
  readonly started = performance.now();

  constructor(
    readonly stream: ServerHttp2Stream,
    readonly ctx: InboundHttpContext,
    readonly pool: AppHttpPool,
    readonly method: string,
    readonly forwardPath: string,
    readonly correlationId: string,
    readonly appHeaders: OutgoingHttpHeaders,
  ) {}
}

/**
 * Serves one tunnel stream addressed to an `http` app port. CONNECT streams are tunnelled upgrades
 * (WebSocket and the like) and go to `handleInboundUpgradeStream`.
 */
export function handleInboundHttpStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, ctx: InboundHttpContext): void {
  const method = headers[':method'];
  if (method === 'CONNECT') {
    handleInboundUpgradeStream(stream, headers, ctx);
    return;
  }
  const correlationId = acceptableRequestId(headers[REQUEST_ID_HEADER]) ?? nextCorrelationId();
  const started = performance.now();
  const target = headers[':path'];
  if (typeof method !== 'string' || typeof target !== 'string') {
    refuse(stream, ctx, new HttpFailure(HTTP_FAILURES.badRequest, 'missing :method or :path'), correlationId, started, method ?? '-', '-');
    return;
  }
  // HTTP/2 forbids Connection (nghttp2 refuses it), but the rule is stated once and holds on every path.
  const named = forbiddenConnectionToken(connectionTokenList(headers.connection), false);
  if (named !== undefined) {
    refuse(stream, ctx, new HttpFailure(HTTP_FAILURES.badRequest, `Connection names ${named}`), correlationId, started, method, target);
    return;
  }
  const targets = forwardTarget(method, target, appHttpOptions(ctx.appPort));
  if (targets === null) {
    refuse(stream, ctx, new HttpFailure(HTTP_FAILURES.badPath), correlationId, started, method, target);
    return;
  }
  const authRequest = httpAuthorizationRequest(ctx, method, targets.policyPath);
  const decision = authorizeHttp(ctx, authRequest, correlationId);
  if (!decision.allowed) {
    const detail = `${decision.reason} (${deciderOf(decision)})`;
    refuse(stream, ctx, new HttpFailure(HTTP_FAILURES.denied, detail), correlationId, started, method, targets.policyPath, deciderOf(decision));
    return;
  }
  const pool = ctx.deps.pools.for(ctx.appPort);
  try {
    pool.acquire();
  } catch (err) {
    refuse(stream, ctx, err as HttpFailure, correlationId, started, method, targets.policyPath);
    return;
  }
  const appHeaders = h2RequestToH1(headers, correlationId, ctx.peer.spiffeId);
  // A body without a declared length must be chunked towards the app: node would otherwise send a GET or
  // DELETE body unframed, and the app would read it as the next request.
  if (!stream.endAfterHeaders && headers['content-length'] === undefined) appHeaders['transfer-encoding'] = 'chunked';
  const exchange = new InboundExchange(stream, ctx, pool, method, targets.forwardPath, correlationId, appHeaders);
  stream.once('close', () => finish(exchange));
  stream.on('error', noop);
  exchange.untrack = ctx.deps.track?.({
    request: authRequest,
    cut: (why) => {
      // Permission revoked mid-exchange: the stream is reset (what the app sent so far stays sent).
      exchange.cutReason = why;
      cancelStream(stream);
    },
  });
  send(exchange);
}

function send(x: InboundExchange): void {
  const { appPort } = x.pool;
  const req = httpRequest({
    agent: x.pool.agent,
    host: appPort.host,
    port: appPort.port,
    method: x.method,
    path: x.forwardPath,
    headers: x.appHeaders,
    setHost: false,
    timeout: x.pool.limits.requestIdleTimeoutMs,
    maxHeaderSize: x.pool.limits.maxHeaderBytes,
    localAddress: appLocalAddress(appPort.host, x.ctx.deps.appSource),
  });
  x.req = req;
  req.once('socket', (socket: Socket) => onSocket(x, socket));
  req.on('information', (info: { statusCode: number }) => {
    // 101 has no place in HTTP/2; upgrades take the CONNECT path (upgrade.ts).
    if (x.status !== 0 || x.stream.destroyed || x.stream.headersSent || info.statusCode === 101) return;
    try {
      x.stream.additionalHeaders({ ':status': info.statusCode });
    } catch {
      // The stream closed in between; its 'close' handler accounts for it.
    }
  });
  req.once('response', (res: IncomingMessage) => onResponse(x, res));
  req.once('timeout', () => {
    x.timedOut = true;
    req.destroy();
  });
  req.on('error', (err) => onRequestError(x, req, err));
  if (x.stream.endAfterHeaders) {
    req.end();
  } else if (!x.retried) {
    x.stream.once('trailers', (trailers: IncomingHttpHeaders) => addTrailers(x, trailers));
    // A caller's reset must not end the app's request body as if complete (finish destroys it instead).
    pipeUntilCleanEnd(x.stream, req);
  }
}

function onSocket(x: InboundExchange, socket: Socket): void {
  if (!socket.connecting) {
    x.connected = true;
    return;
  }
  x.connectTimer = setTimeout(() => {
    x.timedOut = true;
    x.req?.destroy();
  }, x.pool.limits.connectTimeoutMs);
  socket.once('connect', () => {
    x.connected = true;
    clearTimeout(x.connectTimer);
    socket.setNoDelay(true);
  });
}

function addTrailers(x: InboundExchange, trailers: IncomingHttpHeaders): void {
  // HTTP/1.1 can carry trailers only after a chunked body.
  if (x.req === undefined || x.appHeaders['transfer-encoding'] !== 'chunked') return;
  const out: Record<string, string> = {};
  for (const name in trailers) {
    const value = trailers[name];
    if (name.charCodeAt(0) !== 0x3a && typeof value === 'string' && !forbiddenRequestTrailer(name)) out[name] = value;
  }
  x.req.addTrailers(out);
}

function onResponse(x: InboundExchange, res: IncomingMessage): void {
  x.res = res;
  clearTimeout(x.connectTimer);
  const { stream } = x;
  const status = res.statusCode ?? 502;
  if (stream.destroyed) {
    res.destroy();
    return;
  }
  if (forbiddenConnectionToken(connectionTokenList(res.headers.connection), true) !== undefined) {
    // Its framing would be dropped on the way (Connection names it): never pass on a reframed response.
    res.destroy();
    answerFailure(x, new HttpFailure(HTTP_FAILURES.appBadResponse, 'Connection names a framing field'));
    return;
  }
  x.status = status;
  const noBody = responseHasNoBody(x.method, status);
  const wantTrailers = !noBody && res.headers.trailer !== undefined;
  stream.respond(h1ResponseToH2(status, res.headersDistinct), { endStream: noBody, waitForTrailers: wantTrailers });
  if (wantTrailers) stream.once('wantTrailers', () => sendTrailers(stream, res));
  // A body that runs until the app closes: node's client calls it complete at a reset too, so its end is
  // decided at 'close', when the socket's error (if any) is known.
  const untilClose = !noBody && res.headers['content-length'] === undefined && res.headers['transfer-encoding'] === undefined;
  res.once('close', () => {
    // The app reset or closed mid-response: reset the stream so the caller sees a broken response,
    // never a truncated one that looks complete.
    const reset = !res.complete || (untilClose && res.socket?.errored != null);
    if (reset) failStream(stream);
    else if (untilClose && !stream.writableEnded && !stream.destroyed) stream.end();
  });
  res.on('error', noop);
  if (noBody) res.resume();
  else res.pipe(stream, { end: !untilClose });
}

function sendTrailers(stream: ServerHttp2Stream, res: IncomingMessage): void {
  // An empty set is fine: it still ends the stream (END_STREAM on an empty HEADERS frame).
  const out: Record<string, string> = {};
  for (const name in res.trailers) {
    const value = res.trailers[name];
    if (typeof value === 'string' && !isMeshHeader(name)) out[name] = value;
  }
  if (!stream.destroyed) stream.sendTrailers(out);
}

function onRequestError(x: InboundExchange, req: ClientRequest, err: Error): void {
  clearTimeout(x.connectTimer);
  if (req !== x.req) return;
  const { stream } = x;
  if (x.res !== undefined) return; // the response side reports its own failure (see onResponse)
  if (stream.destroyed || x.finished) return;
  const code = (err as { code?: unknown }).code;
  if (req.reusedSocket && code === 'ECONNRESET' && stream.endAfterHeaders && !x.retried && !x.timedOut) {
    x.retried = true;
    send(x);
    return;
  }
  const failure = appFailure(err, x.timedOut, x.connected);
  if (stream.headersSent) {
    closeStream(stream, h2.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  x.ctx.deps.logger.warn({ correlationId: x.correlationId, code: failure.code, err: err.message, port: x.pool.appPort.port }, 'http request to app failed');
  answerFailure(x, failure);
}

/** Answers an app failure on the stream (no response header sent yet). */
function answerFailure(x: InboundExchange, failure: HttpFailure): void {
  const { stream } = x;
  x.status = failure.status;
  const body = failureBody(failure, x.correlationId);
  stream.respond(failureHeaders(failure, x.correlationId, body, true));
  stream.end(body);
  stopRequestBody(stream);
}

function finish(x: InboundExchange): void {
  if (x.finished) return;
  x.finished = true;
  x.untrack?.();
  clearTimeout(x.connectTimer);
  x.pool.release();
  const { req, res } = x;
  // The caller went away (or the stream was reset) before the exchange completed: drop the app
  // connection rather than return a half-used one to the pool.
  if (req !== undefined && (res === undefined || !res.complete)) req.destroy();
  const status = x.status === 0 ? 499 : x.status;
  recordInboundRequest(x.ctx.deps, { peer: x.ctx.peer, local: x.ctx.state.local, correlationId: x.correlationId, method: x.method, path: x.forwardPath, status, code: x.cutReason, started: x.started });
}

/**
 * Answers on the stream without involving the app (a refusal or an early failure), then stops reading
 * the request body so a caller that is uploading learns it may stop.
 */
function refuse(
  stream: ServerHttp2Stream,
  ctx: InboundHttpContext,
  failure: HttpFailure,
  correlationId: string,
  started: number,
  method: string,
  path: string,
  decidedBy?: string,
): void {
  stream.on('error', noop);
  if (!stream.destroyed) {
    const body = failureBody(failure, correlationId);
    const headers = failureHeaders(failure, correlationId, body, true);
    if (decidedBy !== undefined) headers[DENIED_BY_HEADER] = decidedBy;
    stream.respond(headers);
    stream.end(body);
    stopRequestBody(stream);
  }
  recordInboundRequest(ctx.deps, { peer: ctx.peer, local: ctx.state.local, correlationId, method, path, status: failure.status, code: failure.code, started });
}

/** After a complete early answer, a request body still arriving is refused with RST_STREAM(NO_ERROR) (RFC 9113 8.1). */
function stopRequestBody(stream: ServerHttp2Stream): void {
  if (stream.endAfterHeaders || stream.readableEnded) return;
  stream.once('finish', () => {
    if (!stream.destroyed && !stream.readableEnded) stream.close(h2.NGHTTP2_NO_ERROR);
  });
}

function noop(): void {}
