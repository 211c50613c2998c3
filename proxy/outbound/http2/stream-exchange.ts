/**
 * One request from an app speaking HTTP/2 (prior knowledge, h2c; gRPC included), carried as an HTTP/2
 * stream on a pooled tunnel session to an endpoint picked for this request alone: per-request (per-call)
 * balancing over one app connection, as Linkerd does.
 *
 * Retry rule, as on the HTTP/1.1 path (outbound/http/exchange.ts): another endpoint (at most `maxAttempts`)
 * only when nothing was sent (no session), the stream was refused (REFUSED_STREAM, GOAWAY), or the
 * destination's sidecar answered that its app refused the connection, each before a body byte was read
 * from the app. `grpc-timeout` is the request's deadline: when it passes, the tunnel stream is cancelled and
 * the call ends with DEADLINE_EXCEEDED; the header goes on unchanged, so the destination app knows it too.
 * An app that resets its stream (a cancelled call) cancels the tunnel stream, and so the destination's.
 */
import { constants as h2, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { nextCorrelationId } from '../../core/correlation.js';
import { formatAuthority } from '../../core/destination.js';
import { cancelStream, pipeUntilCleanEnd } from '../../core/stream-reset.js';
import { ERROR_HEADER, HTTP_FAILURES, HttpFailure, type HttpFailureKind } from '../../http/errors.js';
import { acceptableRequestId, REQUEST_ID_HEADER } from '../../http/header-rules.js';
import { isGrpcRequest, parseGrpcTimeout } from '../../http2/grpc.js';
import { appRequestToTunnel, trailerFields } from '../../http2/headers.js';
import { ResponseRelay } from '../../http2/relay.js';
import type { BalancedEndpoint } from '../tunnel-client/load-balancer.js';
import type { OutboundRoute } from '../route.js';
import type { OutboundHttpDeps } from '../http/deps.js';
import { recordOutboundH2Request } from './access.js';
import { openRequestStream } from '../tunnel-client/open-stream.js';
import { nextAttemptTarget, noEndpointFailure } from '../http/attempt-target.js';

class H2Exchange {
  readonly started = performance.now();
  readonly relay: ResponseRelay;
  tried: Set<string> | undefined;
  attempts = 0;
  endpoint: BalancedEndpoint | undefined;
  upstream: ClientHttp2Stream | undefined;
  code: string | undefined;
  appRefused = false;
  upstreamFailed = false;
  deadlineTimer: NodeJS.Timeout | undefined;
  deadlinePassed = false;
  timedOut = false;
  done = false;
  requestTrailers: IncomingHttpHeaders | undefined;

  constructor(
    readonly down: ServerHttp2Stream,
    readonly route: OutboundRoute,
    readonly deps: OutboundHttpDeps,
    readonly correlationId: string,
    readonly headers: OutgoingHttpHeaders,
    readonly method: string,
    readonly path: string,
    grpc: boolean,
  ) {
    this.relay = new ResponseRelay(down, grpc, false);
  }
}

export function forwardHttp2Stream(down: ServerHttp2Stream, headers: IncomingHttpHeaders, route: OutboundRoute, deps: OutboundHttpDeps): void {
  down.on('error', noop);
  const correlationId = acceptableRequestId(headers[REQUEST_ID_HEADER]) ?? nextCorrelationId();
  const method = String(headers[':method']);
  const path = typeof headers[':path'] === 'string' ? headers[':path'] : '-';
  const grpc = route.protocol === 'grpc' || isGrpcRequest(headers);
  const target = formatAuthority({ service: route.service, namespace: route.namespace, port: route.targetPort });
  const authority = typeof headers[':authority'] === 'string' ? headers[':authority'] : `${route.service}.${route.namespace}:${route.servicePort}`;
  const x = new H2Exchange(down, route, deps, correlationId, appRequestToTunnel(headers, authority, target, correlationId), method, path, grpc);
  down.once('close', () => onAppDone(x));
  if (method === 'CONNECT' || path === '-') {
    // Extended CONNECT (WebSocket over HTTP/2) would open a byte stream no policy judges after its start.
    fail(x, HTTP_FAILURES.badRequest, method === 'CONNECT' ? 'CONNECT is not carried from HTTP/2 clients' : 'missing :path');
    return;
  }
  if (grpc) {
    const deadline = parseGrpcTimeout(headers['grpc-timeout']);
    if (deadline === null) {
      fail(x, HTTP_FAILURES.badRequest, `malformed grpc-timeout ${JSON.stringify(headers['grpc-timeout'])}`);
      return;
    }
    if (deadline !== undefined) x.deadlineTimer = setTimeout(() => onDeadline(x), deadline);
  }
  if (!down.endAfterHeaders) down.once('trailers', (trailers: IncomingHttpHeaders) => (x.requestTrailers = trailers));
  attempt(x);
}

function attempt(x: H2Exchange): void {
  const target = nextAttemptTarget(x);
  if (target === undefined) {
    fail(x, noEndpointFailure(x));
    return;
  }
  const endpoint = x.endpoint as BalancedEndpoint;
  // Request trailers are passed on when the app sends them; otherwise an empty set ends the stream.
  const options = x.down.endAfterHeaders ? { endStream: true } : { endStream: false, waitForTrailers: true };
  openRequestStream(
    x.deps.pool,
    target,
    x.headers,
    options,
    (stream) => attach(x, stream),
    (err, retryable) => openFailed(x, endpoint, err, retryable),
  );
}

function openFailed(x: H2Exchange, endpoint: BalancedEndpoint, err: unknown, retryable: boolean): void {
  release(x, false);
  x.deps.logger.debug({ correlationId: x.correlationId, endpoint: endpoint.key, err: (err as Error).message }, 'no tunnel stream for HTTP/2 request');
  if (x.done) return;
  if (retryable && x.attempts < x.deps.limits.maxAttempts) {
    attempt(x);
    return;
  }
  fail(x, HTTP_FAILURES.upstreamConnect);
}

function attach(x: H2Exchange, up: ClientHttp2Stream): void {
  if (x.done || x.deadlinePassed) {
    cancelStream(up);
    release(x, true);
    return;
  }
  x.upstream = up;
  up.on('error', noop);
  up.on('headers', (headers: IncomingHttpHeaders) => x.relay.interim(headers));
  up.once('response', (headers: IncomingHttpHeaders, flags: number) => onResponse(x, up, headers, flags));
  up.once('close', () => onUpstreamClose(x, up));
  up.setTimeout(x.deps.limits.upstreamIdleTimeoutMs, () => {
    x.timedOut = true;
    cancelStream(up);
  });
  if (!x.down.endAfterHeaders) {
    up.once('wantTrailers', () => {
      if (!up.destroyed && !up.closed) up.sendTrailers(x.requestTrailers === undefined ? {} : trailerFields(x.requestTrailers, true, false));
    });
    pipeUntilCleanEnd(x.down, up);
  }
}

function onResponse(x: H2Exchange, up: ClientHttp2Stream, headers: IncomingHttpHeaders, flags: number): void {
  if (x.done) return;
  const status = Number(headers[':status']);
  const appRefused = headers[ERROR_HEADER] === HTTP_FAILURES.appUnavailable.code && (status === 503 || status === 200);
  if (appRefused && !x.down.readableDidRead && x.attempts < x.deps.limits.maxAttempts) {
    // Nothing reached any app: another endpoint may have one that is up. This one is reported failing.
    x.upstream = undefined;
    x.down.unpipe(up);
    cancelStream(up);
    release(x, false);
    x.appRefused = true;
    attempt(x);
    return;
  }
  x.upstreamFailed = (status >= 502 && status <= 504) || (headers[ERROR_HEADER] !== undefined && headers['grpc-status'] === '14');
  x.relay.start(up, headers, flags);
}

function onUpstreamClose(x: H2Exchange, up: ClientHttp2Stream): void {
  if (x.upstream !== up) return;
  const rst = up.rstCode ?? h2.NGHTTP2_NO_ERROR;
  const clean = rst === h2.NGHTTP2_NO_ERROR;
  // The endpoint is reported failing when its sidecar answered a failure of its app (502-504, or UNAVAILABLE).
  release(x, clean && !x.upstreamFailed);
  if (x.done || x.deadlinePassed) return;
  if (clean && x.relay.responded) return;
  x.down.unpipe(up);
  if (!x.relay.responded && rst === h2.NGHTTP2_REFUSED_STREAM && !x.down.readableDidRead && x.attempts < x.deps.limits.maxAttempts) {
    x.upstream = undefined;
    attempt(x);
    return;
  }
  fail(x, x.timedOut ? HTTP_FAILURES.upstreamTimeout : HTTP_FAILURES.upstreamReset, `RST_STREAM ${rst}`);
}

function onDeadline(x: H2Exchange): void {
  if (x.done) return;
  x.deadlinePassed = true;
  const up = x.upstream;
  if (up !== undefined) {
    x.down.unpipe(up);
    cancelStream(up);
  }
  fail(x, HTTP_FAILURES.deadlineExceeded, 'grpc-timeout passed');
}

function release(x: H2Exchange, ok: boolean): void {
  const endpoint = x.endpoint;
  if (endpoint === undefined) return;
  x.endpoint = undefined;
  x.deps.balancer.end(endpoint, ok);
  if (!ok) (x.tried ??= new Set()).add(endpoint.key);
}

function fail(x: H2Exchange, kind: HttpFailureKind, detail?: string): void {
  const failure = new HttpFailure(kind, detail);
  x.code = failure.code;
  x.deps.logger.warn(
    { correlationId: x.correlationId, destination: `${x.route.namespace}/${x.route.service}`, code: failure.code, attempts: x.attempts, detail },
    'HTTP/2 request not delivered',
  );
  x.relay.fail(failure, x.correlationId);
}

/** The app's stream closed: the call is over (done, cancelled or reset); account for it once. */
function onAppDone(x: H2Exchange): void {
  if (x.done) return;
  x.done = true;
  clearTimeout(x.deadlineTimer);
  const up = x.upstream;
  const complete = x.down.rstCode === undefined || x.down.rstCode === h2.NGHTTP2_NO_ERROR;
  // A cancelled call (RST_STREAM from the app) cancels the tunnel stream, so the destination's too.
  if (up !== undefined && !up.destroyed && !(complete && up.readableEnded)) cancelStream(up);
  recordOutboundH2Request(x.deps, {
    destination: `${x.route.namespace}/${x.route.service}`,
    correlationId: x.correlationId,
    method: x.method,
    path: x.path,
    status: x.relay.status === 0 ? 499 : x.relay.status,
    grpcStatus: x.relay.grpc ? (x.relay.grpcStatus ?? (complete ? '2' : '1')) : undefined,
    code: x.code,
    attempts: x.attempts,
    started: x.started,
  });
}

function noop(): void {}
