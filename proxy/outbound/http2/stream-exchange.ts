/**
 * One request from an app speaking HTTP/2 (prior knowledge, h2c; gRPC included), carried as an HTTP/2
 * stream on a pooled tunnel session to an endpoint picked for this request alone: per-request (per-call)
 * balancing over one app connection, as Linkerd does.
 *
 * Traffic management (proxy/outbound/traffic/, when the sidecar has it) decides as on the HTTP/1.1 lanes:
 * the route rule and weighted backend (`plan.accepts` filters the balancer), header edits, the circuit
 * breaker (overflow fails at once), connect, per-try and request timeouts, and retries (stream-tries.ts).
 * A gRPC call is a stream: its deadline is the client's `grpc-timeout` (passed on unchanged, so the
 * destination app knows it too; when it passes, the call ends with DEADLINE_EXCEEDED), and without one the
 * request timeout runs only until the response begins; after that, as for any stream, the idle timeout.
 * Without traffic management the fixed rule applies: another endpoint only when nothing was sent, the
 * stream was refused, or the destination's sidecar answered that its app refused the connection.
 * An app that resets its stream (a cancelled call) cancels the tunnel stream, and so the destination's.
 */
import { constants as h2, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { nextCorrelationId } from '../../core/correlation.js';
import { formatAuthority } from '../../core/destination.js';
import { cancelStream } from '../../core/stream-reset.js';
import { ERROR_HEADER, HTTP_FAILURES, HttpFailure, type HttpFailureKind } from '../../http/errors.js';
import { acceptableRequestId, REQUEST_ID_HEADER } from '../../http/header-rules.js';
import { isGrpcRequest, parseGrpcTimeout } from '../../http2/grpc.js';
import { appRequestToTunnel, trailerFields } from '../../http2/headers.js';
import { ResponseRelay } from '../../http2/relay.js';
import type { BalancedEndpoint } from '../tunnel-client/load-balancer.js';
import type { OutboundRoute } from '../route.js';
import type { OutboundHttpDeps } from '../http/deps.js';
import type { RequestPlan } from '../traffic/request-plan.js';
import { TryTimers } from '../traffic/try-timers.js';
import type { RetryReason } from '../../../policy/traffic/index.js';
import { recordOutboundH2Request } from './access.js';
import { openRequestStream } from '../tunnel-client/open-stream.js';
import { nextAttemptTarget, noEndpointFailure } from '../http/attempt-target.js';
import { RequestReplay } from './request-replay.js';
import { startMirror, type MirrorCopy } from '../traffic/mirror.js';
import { trafficRequestOfH2 } from './stream-traffic.js';
import { editTunnelHeaders } from '../traffic/tunnel-header-edits.js';
import { discardTry, finalOutcome, mayRetry, onTryTimeout, release, retryAnswer, upstreamGone, type TryHooks } from './stream-tries.js';

export class H2Exchange {
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
  /** Traffic management's decision for this request; undefined: the fixed rules. */
  plan: RequestPlan | undefined;
  /** The request body kept for a retry (none when the request has no body). */
  replay: RequestReplay | undefined;
  /** The copy of this request a route's mirror sends (its body follows through `replay`). */
  mirror: MirrorCopy | undefined;
  /** Why the next try is a retry a RetryPolicy asked for (it may go back to an endpoint tried). */
  retryReason: RetryReason | undefined;
  /** Bumped per try: a tunnel stream that opens for a try given up on (timed out) is cancelled. */
  tryId = 0;
  readonly timers = new TryTimers();

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
  let deadline: number | undefined;
  if (grpc) {
    const parsed = parseGrpcTimeout(headers['grpc-timeout']);
    if (parsed === null) {
      fail(x, HTTP_FAILURES.badRequest, `malformed grpc-timeout ${JSON.stringify(headers['grpc-timeout'])}`);
      return;
    }
    deadline = parsed;
  }
  if (deps.traffic !== undefined) {
    const plan = deps.traffic.plan(route, trafficRequestOfH2(headers, method, path), deps.balancer.endpoints(route.service, route.namespace));
    x.plan = plan;
    if (plan.overflow !== undefined) {
      fail(x, HTTP_FAILURES.circuitOpen, plan.overflow);
      return;
    }
    const edits = plan.rule.rule.requestHeaders;
    if (edits !== undefined) editTunnelHeaders(x.headers, edits);
    // A gRPC call with a deadline has the client's. One without has the request timeout only when a
    // TimeoutPolicy sets it: the 15 s day-one default would cut a watch-style stream whose server is silent
    // until it has news, and gRPC clients that want a bound send grpc-timeout. Other requests always have it.
    if (deadline === undefined && (!grpc || plan.timeoutsConfigured)) x.timers.startRequest(plan.requestTimeoutMs, () => onRequestTimeout(x));
    if (plan.mirrorLabels !== undefined) x.mirror = startMirror(deps, route, plan, x.headers, !down.endAfterHeaders);
  }
  if (deadline !== undefined) x.deadlineTimer = setTimeout(() => onDeadline(x), deadline);
  if (!down.endAfterHeaders) {
    down.once('trailers', (trailers: IncomingHttpHeaders) => (x.requestTrailers = trailers));
    x.replay = new RequestReplay(down, x.mirror);
  }
  attempt(x);
}

function attempt(x: H2Exchange): void {
  const target = nextAttemptTarget(x, x.plan?.accepts, x.retryReason !== undefined);
  if (target === undefined) {
    fail(x, noEndpointFailure(x));
    return;
  }
  const endpoint = x.endpoint as BalancedEndpoint;
  const tryId = ++x.tryId;
  const plan = x.plan;
  if (plan !== undefined) {
    if (x.attempts === 1) plan.firstTry();
    x.timers.startTry(plan.connectTimeoutMs, () => onTryTimeout(x, tryId, true, HOOKS));
  }
  // Request trailers are passed on when the app sends them; otherwise an empty set ends the stream.
  const options = x.down.endAfterHeaders ? { endStream: true } : { endStream: false, waitForTrailers: true };
  let settled = false;
  openRequestStream(
    x.deps.pool,
    target,
    x.headers,
    options,
    (stream) => {
      settled = true;
      if (tryId !== x.tryId) cancelStream(stream);
      else attach(x, stream);
    },
    (err, retryable) => {
      settled = true;
      if (tryId === x.tryId) openFailed(x, endpoint, err, retryable);
    },
  );
  // No stream at once: the request waits for a session (the breaker's maxPendingRequests); beyond it, fail fast.
  const overflow = settled ? undefined : plan?.startPending();
  if (overflow !== undefined) {
    x.tryId += 1;
    release(x, true, false);
    fail(x, HTTP_FAILURES.circuitOpen, overflow);
  }
}

function openFailed(x: H2Exchange, endpoint: BalancedEndpoint, err: unknown, retryable: boolean): void {
  x.plan?.endPending();
  release(x, false);
  x.plan?.recordTry(endpoint.key, 'connect-failure');
  x.deps.logger.debug({ correlationId: x.correlationId, endpoint: endpoint.key, err: (err as Error).message }, 'no tunnel stream for HTTP/2 request');
  if (x.done || x.deadlinePassed) return;
  // Nothing was sent: another endpoint at once (no backoff), as on the HTTP/1.1 lanes.
  if (retryable && mayRetry(x, 'connect-failure', false)) {
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
  x.plan?.endPending();
  const tryId = x.tryId;
  if (x.plan !== undefined) x.timers.startTry(x.plan.perTryTimeoutMs, () => onTryTimeout(x, tryId, false, HOOKS));
  up.on('error', noop);
  up.on('headers', (headers: IncomingHttpHeaders) => x.relay.interim(headers));
  up.once('response', (headers: IncomingHttpHeaders, flags: number) => onResponse(x, up, headers, flags));
  up.once('close', () => onUpstreamClose(x, up));
  up.setTimeout(x.plan?.idleTimeoutMs(x.deps.limits.upstreamIdleTimeoutMs) ?? x.deps.limits.upstreamIdleTimeoutMs, () => {
    x.timedOut = true;
    cancelStream(up);
  });
  if (!x.down.endAfterHeaders) {
    up.once('wantTrailers', () => {
      if (!up.destroyed && !up.closed) up.sendTrailers(x.requestTrailers === undefined ? {} : trailerFields(x.requestTrailers, true, false));
    });
    (x.replay as RequestReplay).sendTo(up);
  }
}

function onResponse(x: H2Exchange, up: ClientHttp2Stream, headers: IncomingHttpHeaders, flags: number): void {
  if (x.done || x.upstream !== up) return;
  x.timers.clearTry();
  const status = Number(headers[':status']);
  const appRefused = headers[ERROR_HEADER] === HTTP_FAILURES.appUnavailable.code && (status === 503 || status === 200);
  if (appRefused && mayRetry(x, 'app-refused', false)) {
    // Nothing reached any app: another endpoint may have one that is up. This one is reported failing.
    discardTry(x, up, false);
    x.appRefused = true;
    attempt(x);
    return;
  }
  if (retryAnswer(x, up, headers, status, (flags & h2.NGHTTP2_FLAG_END_STREAM) !== 0, HOOKS)) return;
  x.upstreamFailed = (status >= 502 && status <= 504) || (headers[ERROR_HEADER] !== undefined && headers['grpc-status'] === '14');
  // From here the response is the caller's: no more retries, and a gRPC call is a stream (idle timeout only).
  x.replay?.stop();
  if (x.relay.grpc) x.timers.clearRequest();
  x.relay.start(up, headers, flags);
}

function onUpstreamClose(x: H2Exchange, up: ClientHttp2Stream): void {
  if (x.upstream !== up) return;
  const rst = up.rstCode ?? h2.NGHTTP2_NO_ERROR;
  const clean = rst === h2.NGHTTP2_NO_ERROR;
  const key = x.endpoint?.key;
  // The endpoint is reported failing when its sidecar answered a failure of its app (502-504, or UNAVAILABLE).
  release(x, clean && !x.upstreamFailed);
  if (x.relay.responded && key !== undefined) finalOutcome(x, key, clean);
  if (x.done || x.deadlinePassed) return;
  if (clean && x.relay.responded) return;
  x.down.unpipe(up);
  if (!x.relay.responded && key !== undefined && upstreamGone(x, key, rst, HOOKS)) return;
  fail(x, x.timedOut ? HTTP_FAILURES.upstreamTimeout : HTTP_FAILURES.upstreamReset, `RST_STREAM ${rst}`);
}

function onDeadline(x: H2Exchange): void {
  if (x.done) return;
  x.deadlinePassed = true;
  x.timers.clear();
  x.tryId += 1;
  const up = x.upstream;
  if (up !== undefined) {
    x.down.unpipe(up);
    cancelStream(up);
  }
  fail(x, HTTP_FAILURES.deadlineExceeded, 'grpc-timeout passed');
}

/** The whole exchange (retries included) took longer than the destination's request timeout. */
function onRequestTimeout(x: H2Exchange): void {
  if (x.done || x.deadlinePassed) return;
  x.timers.clear();
  x.tryId += 1;
  const up = x.upstream;
  if (up !== undefined) {
    x.timedOut = true;
    x.down.unpipe(up);
    cancelStream(up);
  }
  fail(x, HTTP_FAILURES.upstreamTimeout, 'request timeout');
}

function fail(x: H2Exchange, kind: HttpFailureKind, detail?: string): void {
  x.timers.clear();
  x.replay?.stop();
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
  x.timers.clear();
  x.replay?.stop();
  // A body never read (the request failed before a try) or cut short: the copy must not look complete.
  x.mirror?.abandon();
  const up = x.upstream;
  const complete = x.down.rstCode === undefined || x.down.rstCode === h2.NGHTTP2_NO_ERROR;
  // A cancelled call (RST_STREAM from the app) cancels the tunnel stream, so the destination's too.
  if (up !== undefined && !up.destroyed && !(complete && up.readableEnded)) cancelStream(up);
  const status = x.relay.status === 0 ? 499 : x.relay.status;
  x.plan?.finish(status, (performance.now() - x.started) / 1000);
  recordOutboundH2Request(x.deps, {
    destination: `${x.route.namespace}/${x.route.service}`,
    correlationId: x.correlationId,
    method: x.method,
    path: x.path,
    status,
    grpcStatus: x.relay.grpc ? (x.relay.grpcStatus ?? (complete ? '2' : '1')) : undefined,
    code: x.code,
    attempts: x.attempts,
    started: x.started,
  });
}

const HOOKS: TryHooks = Object.freeze({ attempt, fail });

function noop(): void {}
