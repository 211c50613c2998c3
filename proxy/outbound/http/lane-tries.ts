/**
 * The tries of one outbound HTTP/1.1 exchange (lane-exchange.ts extends this): which endpoint and lane a try
 * takes, and when a request goes to another endpoint. Kept in its own file so the exchange proper (bytes
 * both ways, the ends of an exchange, accounting) stays readable; the state is shared, protected, and costs
 * no allocation per request.
 *
 * Retry rule, as on the node:http path: another endpoint only when no byte was sent (no lane could be
 * opened) or the destination's sidecar answered that its app refused the connection (503 with
 * `trellis-error: TRELLIS_HTTP_APP_UNAVAILABLE`: nothing reached any app) to a request without a body
 * (its bytes are not kept, so a body could not be sent again). Traffic management (proxy/outbound/traffic/)
 * adds what a RetryPolicy and TimeoutPolicy of the destination ask: statuses, resets and timed-out tries of
 * requests without a body retried after a backoff, connect, per-try and whole-request timeouts (504), and
 * circuit-breaker limits (503). The stale kept-alive lane retry stays in lane-exchange.ts.
 */
import type { Socket } from 'node:net';
import { constants as h2 } from 'node:http2';
import { formatAuthority } from '../../core/destination.js';
import { RST_CANCEL } from '../../core/tunnel-protocol.js';
import { Http1ResponseReader } from '../../http1/response-reader.js';
import { closingResponseHead, fieldValue } from '../../http1/message.js';
import type { RequestHead, ResponseHead } from '../../http1/types.js';
import { ERROR_HEADER, HTTP_FAILURES, type HttpFailureKind } from '../../http/errors.js';
import type { BalancedEndpoint } from '../tunnel-client/load-balancer.js';
import { routeTargetPort, type OutboundRoute } from '../route.js';
import type { RequestPlan } from '../traffic/request-plan.js';
import { outcomeOf } from '../traffic/request-plan.js';
import { TryTimers } from '../traffic/try-timers.js';
import type { RetryReason } from '../../../policy/traffic/index.js';
import type { Lane } from './lane-pool.js';
import type { ExchangeOwner, FastPathDeps } from './fast-path.js';

export abstract class LaneTries {
  protected req: RequestHead | undefined;
  /** Kept after the exchange ends: a connection handed over at its next request goes on to this route. */
  protected route: OutboundRoute | undefined;
  protected headBytes: Buffer | undefined;
  protected correlationId = '';
  protected started = 0;
  protected endpoint: BalancedEndpoint | undefined;
  protected tried: Set<string> | undefined;
  protected attempts = 0;
  protected lane: Lane | undefined;
  protected laneReused = false;
  /** The answer on the lane is the destination sidecar's "app refused": read to its end, not written, then retried. */
  protected refused = false;
  /** The last endpoint tried refused so: when none is left, the caller gets that, not "unreachable". */
  protected appRefusedLast = false;
  /** Frames the response on the lane and writes it to the app. */
  protected readonly response: Http1ResponseReader;
  /** Traffic management's decision for this request (proxy/outbound/traffic/), when the sidecar has it. */
  protected plan: RequestPlan | undefined;
  /** Why the answer being read is discarded for a retry, when a RetryPolicy (not the app-refused rule) asked. */
  protected retryReason: RetryReason | undefined;
  /** Bumped per try: a lane that opens for a try given up on (timed out) goes back to the pool. */
  protected tryId = 0;
  protected readonly timers = new TryTimers();

  constructor(
    protected readonly socket: Socket,
    protected readonly deps: FastPathDeps,
    protected readonly owner: ExchangeOwner,
  ) {
    this.response = new Http1ResponseReader({ write: (part) => this.refused || socket.write(part) }, deps.headLimits, deps.bodyLimits);
  }

  /** Writes the head (and what body is held) on a lane found for the current try. */
  protected abstract attach(lane: Lane, reused: boolean): void;
  /** A failure before any response byte reached the app: answer it, then go on or close. */
  protected abstract fail(kind: HttpFailureKind, detail?: string): void;
  /** The response was cut mid-way: reset the app. */
  abstract abort(kind: HttpFailureKind, detail?: string): void;
  /** Lets go of the lane without returning it. */
  abstract dropLane(): void;

  /** Sees each final response head before a byte of it reaches the app (the reader's rewrite hook). */
  protected readonly onFinalHead = (head: ResponseHead): Buffer | undefined => {
    const req = this.req as RequestHead;
    const plan = this.plan;
    if (plan !== undefined) {
      this.timers.clearTry();
      const reason = req.body.kind === 'none' ? plan.statusReason(head.status, grpcStatusOf(head)) : undefined;
      if (reason !== undefined && plan.mayRetry(reason, this.attempts, true)) {
        this.refused = true;
        this.retryReason = reason;
        return undefined;
      }
    }
    if (head.status === 503 && req.body.kind === 'none' && this.attempts < this.deps.http.limits.maxAttempts && fieldValue(head.fields, ERROR_HEADER) === HTTP_FAILURES.appUnavailable.code) {
      this.refused = true;
      return undefined;
    }
    return req.keepAlive ? undefined : closingResponseHead(head);
  };
  /** Picks an endpoint and takes an idle lane to it (none when `fresh`) or opens one; the head goes on it. */
  acquireLane(fresh: boolean): void {
    const route = this.route as OutboundRoute;
    const { balancer, limits } = this.deps.http;
    const plan = this.plan;
    if (plan?.overflow !== undefined) {
      this.fail(HTTP_FAILURES.circuitOpen, plan.overflow);
      return;
    }
    let picked = balancer.pick(route.service, route.namespace, this.tried, route.servicePort, plan?.accepts);
    // A retry for an answered status may go back to the one endpoint there is (Envoy does the same).
    if (picked === undefined && this.retryReason !== undefined) picked = balancer.pick(route.service, route.namespace, undefined, route.servicePort, plan?.accepts);
    if (picked === undefined || this.attempts >= (plan?.maxAttempts ?? limits.maxAttempts)) {
      this.fail(this.appRefusedLast ? HTTP_FAILURES.appUnavailable : this.attempts === 0 && picked === undefined ? HTTP_FAILURES.noEndpoint : HTTP_FAILURES.upstreamConnect);
      return;
    }
    this.attempts += 1;
    this.endpoint = picked;
    balancer.begin(picked);
    const tryId = ++this.tryId;
    if (plan !== undefined) {
      if (this.attempts === 1) plan.firstTry();
      this.timers.startTry(plan.connectTimeoutMs, this.onTryTimeout);
    }
    // Lanes are per endpoint and its own app port (instances of one service may listen on different ones).
    const port = routeTargetPort(route, picked.endpoint);
    const key = `${picked.key}/${route.namespace}/${route.service}:${port}`;
    const idle = fresh ? undefined : this.deps.lanes.take(key);
    if (idle !== undefined) {
      this.attach(idle, true);
      return;
    }
    const target = { endpoint: picked.endpoint, service: route.service, namespace: route.namespace, port };
    const authority = formatAuthority({ service: route.service, namespace: route.namespace, port });
    this.deps.lanes.open(key, target, authority).then(
      (lane) => (tryId === this.tryId ? this.attach(lane, false) : this.deps.lanes.give(lane)),
      (err: unknown) => (tryId === this.tryId ? this.laneUnavailable(picked, err) : undefined),
    );
    // Waiting for a lane is a pending request (the breaker's maxPendingRequests): beyond it, fail fast.
    const overflow = plan?.startPending();
    if (overflow !== undefined) {
      this.tryId += 1;
      this.endpoint = undefined;
      balancer.end(picked, true);
      this.fail(HTTP_FAILURES.circuitOpen, overflow);
    }
  }

  protected laneUnavailable(picked: BalancedEndpoint, err: unknown): void {
    this.plan?.endPending();
    // The balancer's count for `picked` ends once: here, unless the app left meanwhile and ended it.
    if (this.endpoint === picked) {
      this.endpoint = undefined;
      this.deps.http.balancer.end(picked, false);
    }
    if (this.owner.closed) return;
    (this.tried ??= new Set()).add(picked.key);
    this.deps.http.logger.debug({ correlationId: this.correlationId, endpoint: picked.key, err: (err as Error).message }, 'no lane for HTTP request; trying another endpoint');
    this.plan?.recordTry(picked.key, 'connect-failure');
    const retryable = (err as { retryable?: unknown }).retryable === true;
    if (retryable && (this.plan === undefined || this.plan.mayRetry('connect-failure', this.attempts, false))) this.acquireLane(false);
    else this.fail(HTTP_FAILURES.upstreamConnect);
  }
  /**
   * The destination's app refused the connection and its sidecar's 503 has been read (not passed on):
   * nothing reached any app, so the request goes to another endpoint, and this one is reported failing.
   */
  protected retryRefused(): void {
    const lane = this.lane;
    const endpoint = this.endpoint;
    this.lane = undefined;
    this.endpoint = undefined;
    this.refused = false;
    this.appRefusedLast = true;
    if (lane !== undefined && this.response.done && !this.response.trailing && this.response.head?.keepAlive === true) {
      this.deps.lanes.give(lane);
    } else if (lane !== undefined) {
      lane.owner = undefined;
      if (!lane.stream.closed) lane.stream.close(RST_CANCEL);
    }
    const byPolicy = this.retryReason !== undefined;
    this.appRefusedLast = !byPolicy;
    if (endpoint !== undefined) {
      // An app that answered is reachable: ejecting it for its answers is outlier detection's job, not the balancer's.
      this.deps.http.balancer.end(endpoint, byPolicy);
      (this.tried ??= new Set()).add(endpoint.key);
      this.plan?.recordTry(endpoint.key, outcomeOf(this.responseStatus(), false));
    }
    this.deps.http.logger.debug({ correlationId: this.correlationId, endpoint: endpoint?.key, reason: this.retryReason }, 'retrying the request on another endpoint');
    this.response.begin((this.req as RequestHead).method, this.onFinalHead);
    if (byPolicy && this.plan !== undefined) this.timers.startTry(this.plan.backoffMs(this.attempts), () => this.acquireLane(false));
    else this.acquireLane(false);
  }

  /** Connect or per-try timeout: give this try up; another try if the policy allows, else 504. */
  protected readonly onTryTimeout = (): void => {
    const plan = this.plan;
    if (plan === undefined || this.req === undefined || this.response.started || this.owner.closed) return;
    const connecting = this.lane === undefined;
    const endpoint = this.endpoint;
    plan.endPending();
    this.tryId += 1;
    this.dropLane();
    this.refused = false;
    if (endpoint !== undefined) {
      this.endpoint = undefined;
      this.deps.http.balancer.end(endpoint, false);
      (this.tried ??= new Set()).add(endpoint.key);
      plan.recordTry(endpoint.key, connecting ? 'connect-failure' : 'gateway-error');
    }
    const reason = plan.failureReason(connecting ? 'connect-failure' : 'per-try-timeout');
    const again = reason !== undefined && (connecting || this.req.body.kind === 'none') && plan.mayRetry(reason, this.attempts, !connecting);
    if (again) this.retryLater(reason);
    else this.fail(HTTP_FAILURES.upstreamTimeout, connecting ? 'connect timeout' : 'per-try timeout');
  };

  /** The next try, after the policy's backoff; the response reader starts over for it. */
  protected retryLater(reason: RetryReason): void {
    this.retryReason = reason;
    this.response.begin((this.req as RequestHead).method, this.onFinalHead);
    this.timers.startTry((this.plan as RequestPlan).backoffMs(this.attempts), () => this.acquireLane(false));
  }

  /** A RetryPolicy may retry a stream reset (or refused) before any response byte: the try is given up. */
  protected retriedReset(rstCode: number): boolean {
    const plan = this.plan;
    const endpoint = this.endpoint;
    if (plan === undefined || endpoint === undefined || this.response.started || this.req?.body.kind !== 'none') return false;
    const refusedStream = rstCode === RST_REFUSED_STREAM;
    const reason = plan.failureReason(refusedStream ? 'refused-stream' : 'reset');
    if (reason === undefined || !plan.mayRetry(reason, this.attempts, !refusedStream)) return false;
    this.tryId += 1;
    this.endpoint = undefined;
    this.deps.http.balancer.end(endpoint, false);
    (this.tried ??= new Set()).add(endpoint.key);
    plan.recordTry(endpoint.key, 'gateway-error');
    this.retryLater(reason);
    return true;
  }

  /** The whole exchange (retries included) took longer than the destination's request timeout. */
  protected readonly onRequestTimeout = (): void => {
    if (this.req === undefined || this.owner.closed) return;
    this.tryId += 1;
    if (this.response.started && !this.refused) this.abort(HTTP_FAILURES.upstreamTimeout, 'request timeout');
    else this.fail(HTTP_FAILURES.upstreamTimeout, 'request timeout');
  };
  /** The final status from the lane, 0 before one arrived. */
  protected responseStatus(): number {
    return this.response.head?.status ?? 0;
  }
}

const RST_REFUSED_STREAM = h2.NGHTTP2_REFUSED_STREAM;

/** `grpc-status` of a response head (gRPC over HTTP/1.1 is rare; trailers-only answers put it here). */
function grpcStatusOf(head: ResponseHead): number | undefined {
  const v = fieldValue(head.fields, 'grpc-status');
  return v === undefined ? undefined : Number.parseInt(v, 10);
}
