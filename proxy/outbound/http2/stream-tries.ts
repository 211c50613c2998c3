/**
 * When an app HTTP/2 request (stream-exchange.ts) goes to another endpoint, and what each try tells
 * outlier detection. Kept apart so the exchange proper (streams both ways, the ends of a request) stays
 * readable; the state is the exchange's own.
 *
 * A retry needs attempts left and, when something was sent, the request body still kept (request-replay.ts,
 * bounded). Under traffic management the RetryPolicy decides as on the HTTP/1.1 lanes (`RequestPlan`):
 * connect failures and refused streams (nothing sent), resets, per-try timeouts, answered statuses, and
 * gRPC statuses of a Trailers-Only answer (the only gRPC answer whose status comes before its body, so the
 * only one that can be retried unseen: Envoy's rule). A listed gRPC status is the operator's word that the
 * call may be sent again (gRPC's own retry design, A6, lists statuses, not methods): it is retried whatever
 * the method, while other retries of a sent request need an idempotent method or `nonIdempotent`, and
 * every gRPC call is a POST. Each retry takes a budget token and a breaker `retries` slot, and waits the
 * policy's backoff; it may go back to an endpoint already tried when none other is left.
 */
import { constants as h2, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { cancelStream } from '../../core/stream-reset.js';
import { HTTP_FAILURES, type HttpFailureKind } from '../../http/errors.js';
import type { RetryReason } from '../../../policy/traffic/index.js';
import { outcomeOf } from '../traffic/request-plan.js';
import type { H2Exchange } from './stream-exchange.js';
import { outlierStatusOfGrpc } from './stream-traffic.js';

/** What the tries need of the exchange: the next try, and the failure that ends the request. */
export interface TryHooks {
  attempt(x: H2Exchange): void;
  fail(x: H2Exchange, kind: HttpFailureKind, detail?: string): void;
}

/** Ends the balancer's count for the current endpoint; `tried` (default: when it failed) skips it on a retry. */
export function release(x: H2Exchange, ok: boolean, tried = !ok): void {
  const endpoint = x.endpoint;
  if (endpoint === undefined) return;
  x.endpoint = undefined;
  x.deps.balancer.end(endpoint, ok);
  if (tried) (x.tried ??= new Set()).add(endpoint.key);
}

/** The request can be sent again as it was: no body, or all of it kept so far. */
function replayable(x: H2Exchange): boolean {
  return x.down.endAfterHeaders || x.replay?.intact === true;
}

/**
 * Whether another try may go for `reason`; `sent` says the request may have reached an app (then its body
 * must be kept and, under a RetryPolicy, its method safe to repeat). `app-refused` is the fixed rule's:
 * the destination's sidecar answered that nothing reached its app.
 */
export function mayRetry(x: H2Exchange, reason: RetryReason | 'app-refused', sent: boolean): boolean {
  const plan = x.plan;
  if (x.attempts >= (plan?.maxAttempts ?? x.deps.limits.maxAttempts)) return false;
  if ((sent || reason === 'app-refused' || reason === 'refused-stream') && !replayable(x)) return false;
  if (reason === 'app-refused') return true;
  if (plan === undefined) return reason === 'connect-failure' || (reason === 'refused-stream' && !x.down.readableDidRead);
  if (reason === 'connect-failure' || reason === 'reset' || reason === 'refused-stream' || reason === 'per-try-timeout') {
    if (plan.failureReason(reason) === undefined) return false;
  }
  return plan.mayRetry(reason, x.attempts, sent);
}

/** Gives the current try up: its stream cancelled, its endpoint's count ended (`ok`: it answered) and skipped next. */
export function discardTry(x: H2Exchange, up: ClientHttp2Stream, ok: boolean): void {
  x.upstream = undefined;
  x.down.unpipe(up);
  cancelStream(up);
  release(x, ok, true);
}

/** The next try after the policy's backoff (at once without a policy). */
export function retryLater(x: H2Exchange, reason: RetryReason, hooks: TryHooks): void {
  x.retryReason = reason;
  const plan = x.plan;
  if (plan === undefined) {
    hooks.attempt(x);
    return;
  }
  x.timers.startTry(plan.backoffMs(x.attempts), () => {
    if (!x.done && !x.deadlinePassed) hooks.attempt(x);
  });
}

/** A RetryPolicy may retry an answer by its status (or a Trailers-Only gRPC status): the answer is discarded. */
export function retryAnswer(x: H2Exchange, up: ClientHttp2Stream, headers: IncomingHttpHeaders, status: number, ended: boolean, hooks: TryHooks): boolean {
  const plan = x.plan;
  if (plan === undefined) return false;
  const grpcValue = ended && x.relay.grpc ? headers['grpc-status'] : undefined;
  const grpcStatus = typeof grpcValue === 'string' ? Number.parseInt(grpcValue, 10) : undefined;
  const reason = plan.statusReason(status, grpcStatus);
  // A listed gRPC status is retried whatever the method (see above): it is asked as if nothing was sent.
  if (reason === undefined || !replayable(x) || !mayRetry(x, reason, reason !== 'grpc-status')) return false;
  const key = x.endpoint?.key;
  // An endpoint that answered is reachable: judging it by its answers is outlier detection's job.
  discardTry(x, up, true);
  if (key !== undefined) plan.recordTry(key, outcomeOf(grpcStatus === undefined ? status : outlierStatusOfGrpc(grpcStatus), false));
  retryLater(x, reason, hooks);
  return true;
}

/** The tunnel stream closed before any response: retried when the reset allows it. True when a try went on. */
export function upstreamGone(x: H2Exchange, key: string, rst: number, hooks: TryHooks): boolean {
  x.timers.clearTry();
  if (x.timedOut) return false;
  const refused = rst === h2.NGHTTP2_REFUSED_STREAM;
  x.plan?.recordTry(key, 'gateway-error');
  const reason: RetryReason = refused ? 'refused-stream' : 'reset';
  if (!mayRetry(x, reason, !refused)) return false;
  x.upstream = undefined;
  retryLater(x, reason, hooks);
  return true;
}

/** Connect timeout (`connecting`) or per-try timeout (until the response head): another try, or 504. */
export function onTryTimeout(x: H2Exchange, tryId: number, connecting: boolean, hooks: TryHooks): void {
  const plan = x.plan;
  if (plan === undefined || tryId !== x.tryId || x.done || x.deadlinePassed || x.relay.responded) return;
  x.tryId += 1;
  plan.endPending();
  const up = x.upstream;
  if (up !== undefined) {
    x.upstream = undefined;
    x.down.unpipe(up);
    cancelStream(up);
  }
  const key = x.endpoint?.key;
  release(x, false);
  if (key !== undefined) plan.recordTry(key, connecting ? 'connect-failure' : 'gateway-error');
  const reason: RetryReason = connecting ? 'connect-failure' : 'per-try-timeout';
  if (mayRetry(x, reason, !connecting)) retryLater(x, reason, hooks);
  else hooks.fail(x, HTTP_FAILURES.upstreamTimeout, connecting ? 'connect timeout' : 'per-try timeout');
}

/**
 * The answered try is over: outlier detection hears how it went, a gRPC call by its status (UNAVAILABLE
 * as 503, ...). Not when the caller gave up first (its deadline or a cancel says nothing of the endpoint).
 */
export function finalOutcome(x: H2Exchange, key: string, clean: boolean): void {
  const plan = x.plan;
  if (plan === undefined || x.deadlinePassed || (x.done && !clean)) return;
  if (!clean) {
    plan.recordTry(key, 'gateway-error');
    return;
  }
  const grpc = x.relay.grpc && x.relay.grpcStatus !== undefined ? outlierStatusOfGrpc(Number.parseInt(x.relay.grpcStatus, 10)) : undefined;
  plan.recordTry(key, outcomeOf(grpc !== undefined && x.relay.status === 200 ? grpc : x.relay.status, false));
}
