/**
 * The request in flight on a fast-path app connection (outbound/http/app-connection.ts), from its head to its
 * response: the head re-serialised, the endpoint balanced for this request alone, a lane to it taken or
 * opened (outbound/http/lane-pool.ts), the body written on as it arrives, the response framed on the way back and
 * written to the app, and the once-per-request accounting (balancer, metrics, access log) however it ends.
 *
 * Kept apart from the connection because it is the part that knows lanes: the connection knows the app
 * socket (phases, held bytes, timers, hand-over, closing) and learns of an exchange's end through
 * `ExchangeOwner` (fast-path.ts). One object per connection, reused for each of its requests, so the split costs no
 * allocation per request. Bytes move between the app socket and the lane with backpressure both ways.
 *
 * Which endpoint and lane each try takes, and the retries and timeouts (the app-refused rule and the
 * destination's RetryPolicy and TimeoutPolicy), live in lane-tries.ts, which this class extends. Here: a
 * reused lane that closes before answering a request without a body is retried once on a new lane (the
 * kept-alive race every HTTP client knows); anything else is a 502/504 with a stable code.
 */
import type { Socket } from 'node:net';
import { nextCorrelationId } from '../../core/correlation.js';
import { WriteCoalescer } from '../../core/write-coalescer.js';
import { BodyFramer } from '../../http1/body.js';
import type { RequestHead, ResponseHead } from '../../http1/types.js';
import { failureResponseBytes, fieldValue, forwardRequestHead } from '../../http1/message.js';
import { HTTP_FAILURES, HttpFailure, type HttpFailureKind } from '../../http/errors.js';
import { acceptableRequestId, forbiddenRequestTrailer, REQUEST_ID_HEADER } from '../../http/header-rules.js';
import { RST_CANCEL } from '../../core/tunnel-protocol.js';
import type { Lane, LaneOwner } from './lane-pool.js';
import type { ExchangeOwner, FastPathDeps } from './fast-path.js';
import type { OutboundRoute } from '../route.js';
import { recordOutboundRequest } from './access.js';
import { LaneTries } from './lane-tries.js';
import { outcomeOf } from '../traffic/request-plan.js';
import { editedRequestHead, startHttp1Mirror, trafficRequestOf } from '../traffic/http1-request.js';
import type { MirrorCopy } from '../traffic/mirror.js';

export class LaneExchange extends LaneTries implements LaneOwner {
  private readonly reqBody: BodyFramer;
  private staleRetried = false;
  /** The copy of this request a route's mirror sends; its length-framed body is teed in `sendBody`. */
  private mirror: MirrorCopy | undefined;
  private code: string | undefined;
  /** Bulk response chunks to the app leave in one writev per turn (core/write-coalescer.ts). */
  private readonly coalescer: WriteCoalescer;

  constructor(socket: Socket, deps: FastPathDeps, owner: ExchangeOwner) {
    super(socket, deps, owner);
    this.reqBody = new BodyFramer(deps.bodyLimits, forbiddenRequestTrailer);
    this.coalescer = new WriteCoalescer(socket);
  }

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
    if (plan.mirrorLabels !== undefined) this.mirror = startHttp1Mirror(this.deps.http, route, plan, head, this.correlationId);
  }


  protected attach(lane: Lane, reused: boolean): void {
    if (this.owner.closed) {
      // The app left while the lane was being found: nothing was written, so the lane is as good as new.
      if (this.endpoint !== undefined) this.deps.http.balancer.end(this.endpoint, true);
      this.endpoint = undefined;
      this.deps.lanes.give(lane);
      return;
    }
    this.lane = lane;
    this.laneReused = reused;
    const plan = this.plan;
    if (plan !== undefined) {
      plan.endPending();
      this.timers.startTry(plan.perTryTimeoutMs, this.onTryTimeout);
      this.deps.lanes.setIdleTimeout(lane, plan.idleTimeoutMs(this.deps.http.limits.upstreamIdleTimeoutMs));
    }
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
      // A length-framed body is its own bytes: the mirror gets them as they go (it never slows them).
      if (this.mirror !== undefined && !this.mirror.write(part)) this.mirror = undefined;
      if (!lane.stream.write(part)) {
        this.socket.pause();
        lane.stream.once('drain', this.owner.resumeApp);
      }
    }
    if (!this.reqBody.done) return;
    this.mirror?.end();
    this.mirror = undefined;
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

  /** The response is complete but the rest of the request body has nowhere to go: close after it. */
  private completeEarly(): void {
    this.finish(this.responseStatus());
    this.dropLane();
    this.owner.exchangeEnded(false);
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
  protected fail(kind: HttpFailureKind, detail?: string): void {
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
    // A body cut short (or never sent): the copy must not reach the mirrored app as complete.
    this.mirror?.abandon();
    this.mirror = undefined;
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

