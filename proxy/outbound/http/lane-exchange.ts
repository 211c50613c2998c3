/**
 * The request in flight on a fast-path app connection (outbound/http/app-connection.ts), from its head to its
 * response: the head re-serialised, the endpoint balanced for this request alone, a lane to it taken or
 * opened (outbound/http/lane-pool.ts), the body written on as it arrives, the response framed on the way back and
 * written to the app, and the once-per-request accounting (balancer, metrics, access log) however it ends.
 *
 * Kept apart from the connection because it is the part that knows lanes: the connection knows the app
 * socket (phases, held bytes, timers, hand-over, closing) and learns of an exchange's end through
 * `ExchangeOwner`. One object per connection, reused for each of its requests, so the split costs no
 * allocation per request. Bytes move between the app socket and the lane with backpressure both ways.
 *
 * Retry rule, as on the node:http path: another endpoint only when no byte was sent (no lane could be
 * opened) or the destination's sidecar answered that its app refused the connection (503 with
 * `trellis-error: TRELLIS_HTTP_APP_UNAVAILABLE`: nothing reached any app) to a request without a body
 * (its bytes are not kept, so a body could not be sent again); a reused lane that closes before answering
 * a request without a body is retried once on a new lane (the kept-alive race every HTTP client knows);
 * anything else is a 502/504 with a stable code.
 */
import type { Socket } from 'node:net';
import { nextCorrelationId } from '../../core/correlation.js';
import { formatAuthority } from '../../core/destination.js';
import { WriteCoalescer } from '../../core/write-coalescer.js';
import { BodyFramer, type BodyFramerLimits } from '../../http1/body.js';
import { Http1ResponseReader } from '../../http1/response-reader.js';
import type { Http1HeadLimits, RequestHead, ResponseHead } from '../../http1/types.js';
import { failureResponseBytes, fieldValue, forwardRequestHead, serializeResponseHead } from '../../http1/message.js';
import { ERROR_HEADER, HTTP_FAILURES, HttpFailure, type HttpFailureKind } from '../../http/errors.js';
import { acceptableRequestId, forbiddenRequestTrailer, REQUEST_ID_HEADER } from '../../http/header-rules.js';
import type { BalancedEndpoint } from '../tunnel-client/load-balancer.js';
import { RST_CANCEL } from '../../core/tunnel-protocol.js';
import { constants as h2 } from 'node:http2';
import type { OutboundHttpDeps } from './deps.js';
import type { Lane, LaneOwner, LanePool } from './lane-pool.js';
import { routeTargetPort, type OutboundRoute } from '../route.js';
import { recordOutboundRequest } from './access.js';
import type { RequestPlan } from '../traffic/request-plan.js';
import { outcomeOf } from '../traffic/request-plan.js';
import { TryTimers } from '../traffic/try-timers.js';
import { editedRequestHead, trafficRequestOf } from '../traffic/http1-request.js';
import type { RetryReason } from '../../../policy/traffic/index.js';

export interface FastPathDeps {
  readonly http: OutboundHttpDeps;
  readonly lanes: LanePool;
  readonly headLimits: Http1HeadLimits;
  readonly bodyLimits: BodyFramerLimits;
}

/** What an exchange needs from the app connection that owns it. */
export interface ExchangeOwner {
  /** The app connection is closed (or handed over): a lane found now has no request to carry. */
  readonly closed: boolean;
  /** Neither the app (its FIN) nor shutdown asked to close: another request may follow this one. */
  readonly keepsAlive: boolean;
  /** Request body bytes read while no lane was found yet, handed over once when the lane comes. */
  takeHeldBody(): Buffer | undefined;
  /** The request body is complete; `rest` is what followed it in the same read (a pipelined request). */
  requestEnded(rest: Buffer | undefined): void;
  /** The lane took what it was given: read more of the body from the app (bound once: a 'drain' listener). */
  readonly resumeApp: () => void;
  /** The exchange ended and the app has its answer: read the next request, or close when not `keepAlive`. */
  exchangeEnded(keepAlive: boolean): void;
  /** The exchange was cut: destroy the app connection, with a TCP reset when `reset`. */
  cut(reset: boolean): void;
}

/**
 * The caller asked to close (`Connection: close`, dropped as hop-by-hop before the lane): the answer came
 * for a kept-alive lane, so it is made to say close, as the destination's server would have.
 */
function closeRewrite(head: ResponseHead): Buffer | undefined {
  return head.keepAlive ? serializeResponseHead(head, { dropMeshFields: false, close: true }) : undefined;
}

export class LaneExchange implements LaneOwner {
  private req: RequestHead | undefined;
  /** Kept after the exchange ends: a connection handed over at its next request goes on to this route. */
  private route: OutboundRoute | undefined;
  private headBytes: Buffer | undefined;
  private readonly reqBody: BodyFramer;
  private correlationId = '';
  private started = 0;
  private endpoint: BalancedEndpoint | undefined;
  private tried: Set<string> | undefined;
  private attempts = 0;
  private lane: Lane | undefined;
  private laneReused = false;
  private staleRetried = false;
  private code: string | undefined;
  /** The answer on the lane is the destination sidecar's "app refused": read to its end, not written, then retried. */
  private refused = false;
  /** The last endpoint tried refused so: when none is left, the caller gets that, not "unreachable". */
  private appRefusedLast = false;
  /** Bulk response chunks to the app leave in one writev per turn (core/write-coalescer.ts). */
  private readonly coalescer: WriteCoalescer;
  /** Frames the response on the lane and writes it to the app. */
  private readonly response: Http1ResponseReader;
  /** Traffic management's decision for this request (proxy/outbound/traffic/), when the sidecar has it. */
  private plan: RequestPlan | undefined;
  /** Why the answer being read is discarded for a retry, when a RetryPolicy (not the app-refused rule) asked. */
  private retryReason: RetryReason | undefined;
  /** Bumped per try: a lane that opens for a try given up on (timed out) goes back to the pool. */
  private tryId = 0;
  private readonly timers = new TryTimers();

  constructor(
    private readonly socket: Socket,
    private readonly deps: FastPathDeps,
    private readonly owner: ExchangeOwner,
  ) {
    this.reqBody = new BodyFramer(deps.bodyLimits, forbiddenRequestTrailer);
    this.coalescer = new WriteCoalescer(socket);
    this.response = new Http1ResponseReader({ write: (part) => this.refused || socket.write(part) }, deps.headLimits, deps.bodyLimits);
  }

  /** Sees each final response head before a byte of it reaches the app (the reader's rewrite hook). */
  private readonly onFinalHead = (head: ResponseHead): Buffer | undefined => {
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
    return req.keepAlive ? undefined : closeRewrite(head);
  };

  /** The route of the latest request on the connection, undefined before the first. */
  lastRoute(): OutboundRoute | undefined {
    return this.route;
  }

  /** The request body is read completely (at once for a request without one). */
  get requestDone(): boolean {
    return this.reqBody.done;
  }

  /** A lane carries the request: body bytes go straight on (until then the owner holds them). */
  get laneAttached(): boolean {
    return this.lane !== undefined;
  }

  // ---- app → lane ----

  /** Starts the exchange of the request whose head is `raw[start, start + length)`; `acquireLane` sends it. */
  begin(head: RequestHead, route: OutboundRoute, raw: Buffer, start: number, length: number): void {
    this.req = head;
    this.route = route;
    this.started = performance.now();
    this.correlationId = acceptableRequestId(fieldValue(head.fields, REQUEST_ID_HEADER)) ?? nextCorrelationId();
    this.headBytes = forwardRequestHead(raw, start, length, head, head.target, this.correlationId, undefined);
    this.reqBody.start(head.body);
    this.tried = undefined;
    this.attempts = 0;
    this.staleRetried = false;
    this.code = undefined;
    this.refused = false;
    this.appRefusedLast = false;
    this.retryReason = undefined;
    this.response.begin(head.method, this.onFinalHead);
    const traffic = this.deps.http.traffic;
    if (traffic === undefined) return;
    const plan = traffic.plan(route, trafficRequestOf(head), this.deps.http.balancer.endpoints(route.service, route.namespace));
    this.plan = plan;
    const edits = plan.rule.rule.requestHeaders;
    if (edits !== undefined) this.headBytes = editedRequestHead(head, edits, this.correlationId);
    if (!head.upgrade) this.timers.startRequest(plan.requestTimeoutMs, this.onRequestTimeout);
  }

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
  }

  private laneUnavailable(picked: BalancedEndpoint, err: unknown): void {
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

  private attach(lane: Lane, reused: boolean): void {
    if (this.owner.closed) {
      // The app left while the lane was being found: nothing was written, so the lane is as good as new.
      if (this.endpoint !== undefined) this.deps.http.balancer.end(this.endpoint, true);
      this.endpoint = undefined;
      this.deps.lanes.give(lane);
      return;
    }
    this.lane = lane;
    this.laneReused = reused;
    if (this.plan !== undefined) this.timers.startTry(this.plan.perTryTimeoutMs, this.onTryTimeout);
    lane.owner = this;
    lane.timedOut = false;
    const stream = lane.stream;
    const body = this.owner.takeHeldBody();
    stream.cork();
    stream.write(this.headBytes as Buffer);
    if (body !== undefined) this.sendBody(body, 0);
    stream.uncork();
    this.owner.resumeApp();
  }

  /** Frames request body bytes from `chunk[offset..]` and writes them on the attached lane. */
  sendBody(chunk: Buffer, offset: number): void {
    const lane = this.lane as Lane;
    const n = this.reqBody.consume(chunk, offset, chunk.length);
    if (this.reqBody.error !== undefined) {
      this.deps.http.logger.debug({ correlationId: this.correlationId, reason: this.reqBody.error }, 'malformed request body from the app');
      // The lane is reset (the peer never sees the message end); the app hears 400 unless a response began.
      this.fail(HTTP_FAILURES.badRequest, this.reqBody.error);
      return;
    }
    if (n > 0) {
      const part = offset === 0 && n === chunk.length ? chunk : chunk.subarray(offset, offset + n);
      if (!lane.stream.write(part)) {
        this.socket.pause();
        lane.stream.once('drain', this.owner.resumeApp);
      }
    }
    if (!this.reqBody.done) return;
    const end = offset + n;
    this.owner.requestEnded(end < chunk.length ? chunk.subarray(end) : undefined);
    // The response may have finished first (an app refusing an upload); now the request has too.
    if (this.response.done) this.complete();
  }

  // ---- lane → app ----

  onLaneData(chunk: Buffer): void {
    if (this.owner.closed) return;
    this.coalescer.beforeWrite(chunk.length);
    const response = this.response;
    const flowing = response.read(chunk);
    if (response.error !== undefined) {
      this.refused = false;
      this.laneBroke(`${response.error} (on the lane)`);
      return;
    }
    if (this.refused) {
      if (response.done) this.retryRefused();
      return;
    }
    if (!response.done) {
      // Backpressure only while more is to come: a finished lane goes back to the pool unpaused.
      if (!flowing) {
        (this.lane as Lane).stream.pause();
        this.socket.once('drain', this.resumeLane);
      }
      return;
    }
    // Bytes after a complete response: the peer broke the lane's framing; never reuse it.
    const broken = response.trailing;
    if (broken) this.dropLane();
    if (this.reqBody.done) this.complete();
    else if (broken) this.completeEarly();
    // Else a response that came before the request body ended (a refusal of an upload): the rest of the
    // body still goes on the lane, where the peer skips it, and the exchange completes when it has.
  }

  /**
   * The destination's app refused the connection and its sidecar's 503 has been read (not passed on):
   * nothing reached any app, so the request goes to another endpoint, and this one is reported failing.
   */
  private retryRefused(): void {
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
  private readonly onTryTimeout = (): void => {
    const plan = this.plan;
    if (plan === undefined || this.req === undefined || this.response.started || this.owner.closed) return;
    const connecting = this.lane === undefined;
    const endpoint = this.endpoint;
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
  private retryLater(reason: RetryReason): void {
    this.retryReason = reason;
    this.response.begin((this.req as RequestHead).method, this.onFinalHead);
    this.timers.startTry((this.plan as RequestPlan).backoffMs(this.attempts), () => this.acquireLane(false));
  }

  /** A RetryPolicy may retry a stream reset (or refused) before any response byte: the try is given up. */
  private retriedReset(rstCode: number): boolean {
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
  private readonly onRequestTimeout = (): void => {
    if (this.req === undefined || this.owner.closed) return;
    this.tryId += 1;
    if (this.response.started && !this.refused) this.abort(HTTP_FAILURES.upstreamTimeout, 'request timeout');
    else this.fail(HTTP_FAILURES.upstreamTimeout, 'request timeout');
  };

  /** The response is complete but the rest of the request body has nowhere to go: close after it. */
  private completeEarly(): void {
    this.finish(this.responseStatus());
    this.dropLane();
    this.owner.exchangeEnded(false);
  }

  /** The final status from the lane, 0 before one arrived. */
  private responseStatus(): number {
    return this.response.head?.status ?? 0;
  }

  private readonly resumeLane = (): void => {
    this.lane?.stream.resume();
  };

  onLaneClosed(rstCode: number): void {
    const lane = this.lane;
    this.lane = undefined;
    if (this.owner.closed) return;
    if (this.refused) {
      // The refusal was read (not its whole body, which nobody needs): retry all the same.
      this.retryRefused();
      return;
    }
    if (this.response.done) {
      // Only while the request body was still going (an early response): the lane left under it.
      if (!this.reqBody.done) this.completeEarly();
      return;
    }
    if (this.response.untilClose && rstCode === 0) {
      this.complete();
      return;
    }
    const endpoint = this.endpoint;
    if (!this.response.started && this.laneReused && !this.staleRetried && this.req?.body.kind === 'none' && endpoint !== undefined) {
      // The lane was closed under us as we reused it: the request had no body, so send it once more on a new lane.
      this.staleRetried = true;
      this.deps.http.balancer.end(endpoint, true);
      this.endpoint = undefined;
      this.attempts -= 1;
      this.acquireLane(true);
      return;
    }
    const timedOut = lane?.timedOut === true;
    if (!timedOut && this.retriedReset(rstCode)) return;
    this.fail(timedOut ? HTTP_FAILURES.upstreamTimeout : HTTP_FAILURES.upstreamReset, `RST_STREAM ${rstCode}`);
  }

  // ---- ends of an exchange ----

  private complete(): void {
    const res = this.response.head as ResponseHead;
    const req = this.req as RequestHead;
    this.finish(res.status);
    const lane = this.lane;
    this.lane = undefined;
    if (lane !== undefined) {
      this.socket.removeListener('drain', this.resumeLane);
      if (lane.stream.isPaused()) lane.stream.resume();
      this.deps.lanes.give(lane);
    }
    this.owner.exchangeEnded(req.keepAlive && res.keepAlive && this.owner.keepsAlive);
  }

  /** A failure before any response byte reached the app: answer it, then go on or close. */
  private fail(kind: HttpFailureKind, detail?: string): void {
    if (this.response.started) {
      this.abort(kind, detail);
      return;
    }
    const failure = new HttpFailure(kind, detail);
    this.code = failure.code;
    this.deps.http.logger.warn(
      { correlationId: this.correlationId, destination: this.destination(), code: failure.code, attempts: this.attempts, detail },
      'HTTP request not delivered',
    );
    // The request body may still be arriving; closing after the answer avoids reading it as the next request.
    const keep = this.reqBody.done && (this.req?.keepAlive ?? false) && this.owner.keepsAlive;
    this.dropLane();
    this.socket.write(failureResponseBytes(failure, this.correlationId, !keep));
    this.finish(failure.status, false);
    this.owner.exchangeEnded(keep);
  }

  /** The response was cut mid-way (or the request broken): reset the app so it cannot mistake it for complete. */
  abort(kind: HttpFailureKind, detail?: string): void {
    this.code = kind.code;
    this.deps.http.logger.warn({ correlationId: this.correlationId, destination: this.destination(), code: kind.code, detail }, 'HTTP exchange cut');
    this.dropLane();
    this.finish(this.response.started ? this.responseStatus() : kind.status, false);
    // A framed body (Content-Length, chunked) is visibly short at a FIN, and the app keeps what arrived; a
    // body that runs until close would end cleanly at a FIN, so that app gets a TCP reset.
    this.owner.cut(this.response.untilClose);
  }

  /** The app connection closed under the exchange: a request in flight ends as 499 (or the status that came). */
  appLeft(): void {
    if (this.req === undefined) return;
    this.dropLane();
    // A refusal being read for a retry never reached the app.
    const status = this.refused ? 0 : this.responseStatus();
    this.refused = false;
    this.finish(status === 0 ? 499 : status, true);
  }

  private laneBroke(detail: string): void {
    this.dropLane();
    if (this.response.started) this.abort(HTTP_FAILURES.upstreamReset, detail);
    else this.fail(HTTP_FAILURES.upstreamReset, detail);
  }

  /** Lets go of the lane without returning it: it may be mid-message, so it is reset. */
  dropLane(): void {
    const lane = this.lane;
    this.lane = undefined;
    if (lane === undefined) return;
    lane.owner = undefined;
    if (!lane.stream.closed) lane.stream.close(RST_CANCEL);
  }

  /** Balancer, metrics and the access log, once per request. */
  private finish(status: number, ok = status < 502 || status > 504): void {
    const endpoint = this.endpoint;
    this.endpoint = undefined;
    if (endpoint !== undefined) this.deps.http.balancer.end(endpoint, ok);
    const plan = this.plan;
    if (plan !== undefined) {
      this.plan = undefined;
      this.timers.clear();
      this.tryId += 1;
      if (endpoint !== undefined && status !== 499) plan.recordTry(endpoint.key, outcomeOf(status, false));
      plan.finish(status, (performance.now() - this.started) / 1000);
    }
    if (this.req === undefined) return;
    const { method, target } = this.req;
    recordOutboundRequest(this.deps.http, { destination: this.destination(), correlationId: this.correlationId, method, path: target, status, code: this.code, attempts: this.attempts, started: this.started });
    this.req = undefined;
  }

  private destination(): string {
    return this.route === undefined ? '-' : `${this.route.namespace}/${this.route.service}`;
  }
}

const RST_REFUSED_STREAM = h2.NGHTTP2_REFUSED_STREAM;

/** `grpc-status` of a response head (gRPC over HTTP/1.1 is rare; trailers-only answers put it here). */
function grpcStatusOf(head: ResponseHead): number | undefined {
  const v = fieldValue(head.fields, 'grpc-status');
  return v === undefined ? undefined : Number.parseInt(v, 10);
}
