/**
 * One HTTP/1.1 request from the app, carried as an HTTP/2 request on a pooled tunnel session to an
 * endpoint the load balancer picks for this request alone.
 *
 * Retry rule (nothing is ever sent twice): a request is retried on another endpoint, up to `maxAttempts`,
 * only when the tunnel could not be reached (no session: nothing was sent), the peer refused the stream
 * (REFUSED_STREAM, also what a GOAWAY means for streams it did not process), or the destination's sidecar
 * answered that its app refused the connection (503 `trellis-error: TRELLIS_HTTP_APP_UNAVAILABLE`; an
 * app's own 503 cannot carry it, the inbound drops app `trellis-*` fields), each before the request body
 * was read from the app (a body read is not kept, so it could not be sent again). Any other failure before the response is a 502/504 with a stable code; a failure
 * after the response started resets the app's connection, which is what it would see without a mesh.
 *
 * Expect: 100-continue travels to the destination app, and its 100 comes back through `writeContinue`.
 * When the final answer comes first (an app refusing the upload), the connection is closed after it, so
 * a body the caller may still send is never read as the next request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants as h2, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { nextCorrelationId } from '../../core/correlation.js';
import { formatAuthority } from '../../core/destination.js';
import { ERROR_HEADER, failureBody, failureHeaders, HTTP_FAILURES, HttpFailure, type HttpFailureKind } from '../../http/errors.js';
import { acceptableRequestId, connectionTokenList, forbiddenConnectionToken, forbiddenRequestTrailer, h1RequestToH2, h2ResponseToH1, REQUEST_ID_HEADER } from '../../http/header-rules.js';
import type { BalancedEndpoint } from '../tunnel-client/load-balancer.js';
import type { OutboundHttpDeps } from './deps.js';
import type { OutboundRoute } from '../route.js';
import { recordOutboundRequest } from './access.js';
import { cancelStream, pipeUntilCleanEnd } from '../../core/stream-reset.js';
import { nextAttemptTarget, noEndpointFailure } from './attempt-target.js';
import { openRequestStream } from '../tunnel-client/open-stream.js';

// Explicit both ways: node's HTTP/2 client would otherwise end GET, HEAD and DELETE streams at once,
// dropping a body the app did send.
const END_STREAM = Object.freeze({ endStream: true });
const BODY = Object.freeze({ endStream: false });
const BODY_WITH_TRAILERS = Object.freeze({ endStream: false, waitForTrailers: true });

class OutboundExchange {
  readonly started = performance.now();
  tried: Set<string> | undefined;
  attempts = 0;
  endpoint: BalancedEndpoint | undefined;
  stream: ClientHttp2Stream | undefined;
  status = 0;
  code: string | undefined;
  responded = false;
  continueSent = false;
  timedOut = false;
  /** The last endpoint tried answered that its app refused: when none is left, the caller gets that. */
  appRefused = false;
  appGone = false;
  finished = false;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly route: OutboundRoute,
    readonly deps: OutboundHttpDeps,
    readonly correlationId: string,
    readonly headers: OutgoingHttpHeaders,
    readonly hasBody: boolean,
    readonly expectContinue: boolean,
  ) {}
}

export function forwardHttpRequest(req: IncomingMessage, res: ServerResponse, route: OutboundRoute, deps: OutboundHttpDeps, expectContinue: boolean): void {
  const correlationId = acceptableRequestId(req.headers[REQUEST_ID_HEADER]) ?? nextCorrelationId();
  const target = formatAuthority({ service: route.service, namespace: route.namespace, port: route.targetPort });
  const authority = req.headers.host ?? `${route.service}.${route.namespace}:${route.servicePort}`;
  const method = req.method ?? 'GET';
  const headers = h1RequestToH2(method, req.url ?? '/', authority, req.headers, target, correlationId);
  const length = req.headers['content-length'];
  const hasBody = req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
  const x = new OutboundExchange(req, res, route, deps, correlationId, headers, hasBody, expectContinue);
  res.once('close', () => onAppDone(x));
  // The Connection rule (http/header-rules.ts): dropping a framing field it names would reframe the request.
  const named = forbiddenConnectionToken(connectionTokenList(req.headers.connection), false);
  if (named !== undefined) {
    res.shouldKeepAlive = false;
    fail(x, HTTP_FAILURES.badRequest, `Connection names ${named}, which frames or routes the request`);
    return;
  }
  attempt(x);
}

function attempt(x: OutboundExchange): void {
  const target = nextAttemptTarget(x);
  if (target === undefined) {
    fail(x, noEndpointFailure(x));
    return;
  }
  const endpoint = x.endpoint as BalancedEndpoint;
  const options = !x.hasBody ? END_STREAM : x.req.headers.trailer === undefined ? BODY : BODY_WITH_TRAILERS;
  openRequestStream(
    x.deps.pool,
    target,
    x.headers,
    options,
    (stream) => attach(x, stream),
    (err, retryable) => openFailed(x, endpoint, err, retryable),
  );
}

function openFailed(x: OutboundExchange, endpoint: BalancedEndpoint, err: unknown, retryable: boolean): void {
  release(x, false);
  x.deps.logger.debug({ correlationId: x.correlationId, endpoint: endpoint.key, err: (err as Error).message }, 'no tunnel stream for HTTP request');
  if (x.appGone) return;
  if (retryable && x.attempts < x.deps.limits.maxAttempts) {
    (x.tried ??= new Set()).add(endpoint.key);
    attempt(x);
    return;
  }
  fail(x, HTTP_FAILURES.upstreamConnect);
}

function attach(x: OutboundExchange, stream: ClientHttp2Stream): void {
  if (x.appGone) {
    stream.close(h2.NGHTTP2_CANCEL);
    release(x, true);
    return;
  }
  x.stream = stream;
  stream.on('error', noop);
  stream.once('response', (headers: IncomingHttpHeaders) => onResponse(x, stream, headers));
  if (x.expectContinue) {
    stream.once('continue', () => {
      if (x.responded || x.appGone) return;
      x.continueSent = true;
      x.res.writeContinue();
    });
  }
  stream.once('trailers', (trailers: IncomingHttpHeaders) => {
    const out: Record<string, string> = {};
    for (const name in trailers) {
      const value = trailers[name];
      if (name.charCodeAt(0) !== 0x3a && typeof value === 'string') out[name] = value;
    }
    x.res.addTrailers(out);
  });
  stream.once('close', () => onStreamClose(x, stream));
  stream.setTimeout(x.deps.limits.upstreamIdleTimeoutMs, () => {
    x.timedOut = true;
    cancelStream(stream);
  });
  if (x.hasBody) {
    if (x.req.headers.trailer !== undefined) stream.once('wantTrailers', () => sendRequestTrailers(x, stream));
    x.req.pipe(stream);
  }
}

/** HTTP/1.1 request trailers (after a chunked body) become an HTTP/2 trailing HEADERS frame. */
function sendRequestTrailers(x: OutboundExchange, stream: ClientHttp2Stream): void {
  const out: Record<string, string> = {};
  const trailers = x.req.trailers;
  for (const name in trailers) {
    const value = trailers[name];
    if (typeof value === 'string' && !forbiddenRequestTrailer(name)) out[name] = value;
  }
  stream.sendTrailers(out);
}

function onResponse(x: OutboundExchange, stream: ClientHttp2Stream, headers: IncomingHttpHeaders): void {
  if (x.appGone) return;
  const status = Number(headers[':status']);
  if (status === 503 && headers[ERROR_HEADER] === HTTP_FAILURES.appUnavailable.code && !x.req.readableDidRead && !x.continueSent && x.attempts < x.deps.limits.maxAttempts) {
    // Nothing reached any app: another endpoint may have one that is up. This one is reported failing.
    x.stream = undefined;
    x.req.unpipe(stream);
    cancelStream(stream);
    release(x, false);
    x.appRefused = true;
    x.deps.logger.debug({ correlationId: x.correlationId }, 'the destination app refused the connection; trying another endpoint');
    attempt(x);
    return;
  }
  x.status = status;
  x.responded = true;
  const out = h2ResponseToH1(headers);
  // The app may still be holding a body back for a 100 that will never come: do not read it as a request.
  if (x.expectContinue && !x.continueSent && !x.req.complete) out.connection = 'close';
  x.res.writeHead(status, out);
  // A reset response must reach the app as broken (onStreamClose destroys it), never as complete.
  pipeUntilCleanEnd(stream, x.res);
}

function onStreamClose(x: OutboundExchange, stream: ClientHttp2Stream): void {
  if (x.stream !== stream) return;
  const rst = stream.rstCode ?? h2.NGHTTP2_NO_ERROR;
  if (x.responded) {
    const broken = rst !== h2.NGHTTP2_NO_ERROR && !x.res.writableEnded;
    release(x, !broken && (x.status < 502 || x.status > 504));
    // The response was cut mid-way: reset the app's connection so it cannot mistake it for complete.
    if (broken && !x.res.destroyed) breakResponse(x.res);
    return;
  }
  release(x, x.appGone);
  if (x.appGone) return;
  x.req.unpipe(stream);
  if (rst === h2.NGHTTP2_REFUSED_STREAM && !x.req.readableDidRead && x.attempts < x.deps.limits.maxAttempts && x.endpoint !== undefined) {
    (x.tried ??= new Set()).add(x.endpoint.key);
    x.stream = undefined;
    attempt(x);
    return;
  }
  fail(x, x.timedOut ? HTTP_FAILURES.upstreamTimeout : HTTP_FAILURES.upstreamReset, `RST_STREAM ${rst}`);
}

/** Ends the balancer's count for the current endpoint exactly once. */
function release(x: OutboundExchange, ok: boolean): void {
  const endpoint = x.endpoint;
  if (endpoint === undefined) return;
  x.endpoint = undefined;
  x.deps.balancer.end(endpoint, ok);
  if (!ok) (x.tried ??= new Set()).add(endpoint.key);
}

function fail(x: OutboundExchange, kind: HttpFailureKind, detail?: string): void {
  const { res } = x;
  if (x.appGone || res.destroyed) return;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const failure = new HttpFailure(kind, detail);
  x.status = failure.status;
  x.code = failure.code;
  x.deps.logger.warn(
    { correlationId: x.correlationId, destination: `${x.route.namespace}/${x.route.service}`, code: failure.code, attempts: x.attempts, detail },
    'HTTP request not delivered',
  );
  const body = failureBody(failure, x.correlationId);
  const headers = failureHeaders(failure, x.correlationId, body, false);
  // The request body may still be arriving; closing after the answer avoids reading it as the next request.
  if (!x.req.complete) headers.connection = 'close';
  res.writeHead(failure.status, headers);
  res.end(body);
}

/** The response is finished or the app went away: account for it once. */
function onAppDone(x: OutboundExchange): void {
  if (x.finished) return;
  x.finished = true;
  if (!x.res.writableFinished) {
    x.appGone = true;
    const stream = x.stream;
    // RST_STREAM alone: close() would send END_STREAM first, and an upload cut short by the app going away
    // could reach the destination app as a complete body.
    if (stream !== undefined) cancelStream(stream);
  }
  const status = x.res.writableFinished ? x.status : x.status === 0 ? 499 : x.status;
  recordOutboundRequest(x.deps, {
    destination: `${x.route.namespace}/${x.route.service}`,
    correlationId: x.correlationId,
    method: x.req.method ?? '-',
    path: x.req.url ?? '-',
    status,
    code: x.code,
    attempts: x.attempts,
    started: x.started,
  });
}

function noop(): void {}

/**
 * Ends the caller's connection under a cut response so that it cannot be taken for complete. A framed
 * body (Content-Length, chunked) is visibly short at a FIN, and the caller keeps what arrived; a body that
 * runs until close (to an HTTP/1.0 caller) would end cleanly at a FIN, so that caller gets a TCP reset.
 */
function breakResponse(res: ServerResponse): void {
  const framed = res.getHeader('content-length') !== undefined || res.chunkedEncoding;
  const socket = res.socket;
  if (!framed && socket !== null && !socket.destroyed && socket.readyState !== 'opening') socket.resetAndDestroy();
  else res.destroy();
}
