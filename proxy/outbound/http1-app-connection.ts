/**
 * One app connection on the outbound HTTP fast path: the app's HTTP/1.1 requests are framed here (no
 * node:http objects), each is balanced on its own, written to a lane (http1-lane-pool.ts) to the chosen
 * endpoint, and the response bytes are framed on the way back and written to the app unchanged.
 *
 * One request at a time per connection: pipelined requests wait in the socket (it is paused) until the
 * response before them is written, so responses keep request order and at most one read chunk is held.
 * Bodies are never copied: chunks go on as they arrive, with backpressure both ways (a full lane pauses
 * the app socket; a slow app pauses the lane, and HTTP/2 flow control pushes back to the peer).
 *
 * Anything this path does not carry — Upgrade, Expect: 100-continue, CONNECT, HTTP/1.0 — hands the
 * connection, at that request, to the node:http path (`fallback`), which carries each request as an
 * HTTP/2 request. Retry rule, as on that path: another endpoint only when no byte was sent (no lane could
 * be opened); a reused lane that closes before answering a request without a body is retried once on a
 * new lane (the kept-alive race every HTTP client knows); anything else is a 502/504 with a stable code.
 */
import type { Socket } from 'node:net';
import { nextCorrelationId } from '../core/correlation.js';
import { formatAuthority } from '../core/destination.js';
import { BodyFramer, type BodyFramerLimits } from '../core/http1-body.js';
import { parseRequestHead } from '../core/http1-head.js';
import { Http1ResponseReader } from '../core/http1-response-reader.js';
import type { Http1HeadLimits, RequestHead, ResponseHead } from '../core/http1-types.js';
import { PartialHead } from '../core/http1-partial-head.js';
import { failureResponseBytes, fieldValue, forwardRequestHead, serializeResponseHead } from '../core/http1-message.js';
import { HTTP_FAILURES, HttpFailure, type HttpFailureKind } from '../core/http-errors.js';
import { acceptableRequestId, REQUEST_ID_HEADER } from '../core/http-headers.js';
import type { BalancedEndpoint } from '../core/load-balancer.js';
import { RST_CANCEL } from '../core/tunnel-protocol.js';
import type { OutboundHttpDeps } from './http-deps.js';
import type { Lane, LaneOwner, LanePool } from './http1-lane-pool.js';
import type { OutboundRoute } from './outbound-route.js';
import { recordOutboundRequest } from './http-access.js';

export interface FastPathDeps {
  readonly http: OutboundHttpDeps;
  readonly lanes: LanePool;
  readonly headLimits: Http1HeadLimits;
  readonly bodyLimits: BodyFramerLimits;
}

/** Takes over a connection at a request this path does not carry; `pending` are the bytes read but not handled. */
export type FallbackHandler = (socket: Socket, pending: Buffer | undefined, route: OutboundRoute | undefined) => void;

/** App bytes kept while they cannot go on, before the socket is paused. */
const HOLD_LIMIT = 64 * 1024;

const enum Phase {
  Head,
  Body,
  Await,
  Closed,
}

/**
 * The caller asked to close (`Connection: close`, dropped as hop-by-hop before the lane): the answer came
 * for a kept-alive lane, so it is made to say close, as the destination's server would have.
 */
function closeRewrite(head: ResponseHead): Buffer | undefined {
  return head.keepAlive ? serializeResponseHead(head, { dropMeshFields: false, close: true }) : undefined;
}

export class Http1AppConnection implements LaneOwner {
  private phase = Phase.Head;
  /** App bytes read but not yet handled: requests after the one in flight. */
  private buffered: Buffer | undefined;
  /** A request head still arriving. */
  private readonly partialHead = new PartialHead();
  private clientEnded = false;
  private draining = false;
  /** The socket's inactivity timer is the (shorter) head timeout while a head is arriving. */
  private headTimer = false;

  // The exchange in flight.
  private req: RequestHead | undefined;
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
  /** Frames the response on the lane and writes it to the app. */
  private readonly response: Http1ResponseReader;

  constructor(
    private readonly socket: Socket,
    private readonly resolve: () => OutboundRoute | undefined,
    private readonly deps: FastPathDeps,
    private readonly fallback: FallbackHandler,
  ) {
    this.reqBody = new BodyFramer(deps.bodyLimits);
    this.response = new Http1ResponseReader({ write: (part) => socket.write(part) }, deps.headLimits, deps.bodyLimits);
    socket.setNoDelay(true);
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('timeout', this.onTimeout);
    socket.once('close', this.onClose);
    socket.setTimeout(deps.http.limits.keepAliveTimeoutMs);
  }

  /** Shutdown: an idle connection closes now, a busy one after its response. */
  drain(): void {
    this.draining = true;
    if (this.phase === Phase.Head && this.partialHead.empty) this.closeGracefully();
  }

  // ---- app → lane ----

  private readonly onData = (chunk: Buffer): void => {
    switch (this.phase) {
      case Phase.Head: {
        const data = this.partialHead.push(chunk, this.deps.headLimits.maxHeadBytes);
        if (data !== undefined) this.readHead(data, 0);
        return;
      }
      case Phase.Body:
        if (this.lane === undefined) this.hold(chunk);
        else this.sendBody(chunk, 0);
        return;
      case Phase.Await:
        // A pipelined request: it waits (bounded: the socket is paused) until this response is written.
        this.hold(chunk);
        return;
      default:
        return;
    }
  };

  /**
   * Keeps app bytes that cannot go on yet (body bytes while a lane is found, a pipelined request). The
   * socket is paused only past HOLD_LIMIT: pausing and resuming a socket per request costs more than the
   * rest of the request's JavaScript.
   */
  private hold(chunk: Buffer): void {
    this.buffered = this.buffered === undefined ? chunk : Buffer.concat([this.buffered, chunk]);
    if (this.buffered.length > HOLD_LIMIT) this.socket.pause();
  }

  private resumeSocket(): void {
    if (this.socket.isPaused()) this.socket.resume();
  }

  private readHead(data: Buffer, offset: number): void {
    const parsed = parseRequestHead(data, offset, data.length, this.deps.headLimits);
    if (!parsed.ok) {
      if (parsed.incomplete) {
        this.partialHead.hold(offset === 0 ? data : data.subarray(offset));
        if (!this.headTimer) {
          this.headTimer = true;
          this.socket.setTimeout(this.deps.http.limits.headersTimeoutMs);
        }
        this.resumeSocket();
        return;
      }
      const kind = parsed.status === 431 ? HTTP_FAILURES.headTooLarge : HTTP_FAILURES.badRequest;
      this.deps.http.logger.debug({ reason: parsed.reason }, 'malformed request from the app');
      this.refuseAndClose(kind, parsed.reason);
      return;
    }
    const head = parsed.head;
    if (this.headTimer) {
      this.headTimer = false;
      this.socket.setTimeout(this.deps.http.limits.keepAliveTimeoutMs);
    }
    if (head.upgrade || head.expectContinue || head.minorVersion === 0) {
      this.handOver(offset === 0 ? data : data.subarray(offset));
      return;
    }
    const route = this.resolve();
    if (route === undefined) {
      this.deps.http.logger.warn({ code: HTTP_FAILURES.unknownDestination.code }, 'no upstream in config for this listener; request refused');
      this.refuseAndClose(HTTP_FAILURES.unknownDestination);
      return;
    }
    const end = offset + parsed.length;
    this.begin(head, route, data, offset, parsed.length);
    this.buffered = end < data.length ? data.subarray(end) : undefined;
    this.acquireLane(false);
  }

  private begin(head: RequestHead, route: OutboundRoute, raw: Buffer, start: number, length: number): void {
    this.req = head;
    this.route = route;
    this.started = performance.now();
    this.correlationId = acceptableRequestId(fieldValue(head.fields, REQUEST_ID_HEADER)) ?? nextCorrelationId();
    this.headBytes = forwardRequestHead(raw, start, length, head, head.target, this.correlationId, undefined);
    this.reqBody.start(head.body);
    this.phase = this.reqBody.done ? Phase.Await : Phase.Body;
    this.tried = undefined;
    this.attempts = 0;
    this.staleRetried = false;
    this.code = undefined;
    this.response.begin(head.method, head.keepAlive ? undefined : closeRewrite);
  }

  private acquireLane(fresh: boolean): void {
    const route = this.route as OutboundRoute;
    const { balancer, limits } = this.deps.http;
    const picked = balancer.pick(route.service, route.namespace, this.tried);
    if (picked === undefined || this.attempts >= limits.maxAttempts) {
      this.fail(this.attempts === 0 && picked === undefined ? HTTP_FAILURES.noEndpoint : HTTP_FAILURES.upstreamConnect);
      return;
    }
    this.attempts += 1;
    this.endpoint = picked;
    balancer.begin(picked);
    const key = `${picked.key}/${route.namespace}/${route.service}:${route.targetPort}`;
    const idle = fresh ? undefined : this.deps.lanes.take(key);
    if (idle !== undefined) {
      this.attach(idle, true);
      return;
    }
    const target = { endpoint: picked.endpoint, service: route.service, namespace: route.namespace, port: route.targetPort };
    const authority = formatAuthority({ service: route.service, namespace: route.namespace, port: route.targetPort });
    this.deps.lanes.open(key, target, authority).then(
      (lane) => this.attach(lane, false),
      (err: unknown) => this.laneUnavailable(picked, err),
    );
  }

  private laneUnavailable(picked: BalancedEndpoint, err: unknown): void {
    // The balancer's count for `picked` ends once: here, unless the app left meanwhile and ended it.
    if (this.endpoint === picked) {
      this.endpoint = undefined;
      this.deps.http.balancer.end(picked, false);
    }
    if (this.phase === Phase.Closed) return;
    (this.tried ??= new Set()).add(picked.key);
    this.deps.http.logger.debug({ correlationId: this.correlationId, endpoint: picked.key, err: (err as Error).message }, 'no lane for HTTP request; trying another endpoint');
    if ((err as { retryable?: unknown }).retryable === true) this.acquireLane(false);
    else this.fail(HTTP_FAILURES.upstreamConnect);
  }

  private attach(lane: Lane, reused: boolean): void {
    if (this.phase === Phase.Closed) {
      // The app left while the lane was being found: nothing was written, so the lane is as good as new.
      if (this.endpoint !== undefined) this.deps.http.balancer.end(this.endpoint, true);
      this.endpoint = undefined;
      this.deps.lanes.give(lane);
      return;
    }
    this.lane = lane;
    this.laneReused = reused;
    lane.owner = this;
    lane.timedOut = false;
    const stream = lane.stream;
    const body = this.phase === Phase.Body ? this.buffered : undefined;
    if (body !== undefined) this.buffered = undefined;
    stream.cork();
    stream.write(this.headBytes as Buffer);
    if (body !== undefined) this.sendBody(body, 0);
    stream.uncork();
    if (this.phase === Phase.Body && this.buffered === undefined) this.resumeSocket();
  }

  private sendBody(chunk: Buffer, offset: number): void {
    const lane = this.lane as Lane;
    const n = this.reqBody.consume(chunk, offset, chunk.length);
    if (this.reqBody.error !== undefined) {
      this.deps.http.logger.debug({ correlationId: this.correlationId, reason: this.reqBody.error }, 'malformed request body from the app');
      this.abort(HTTP_FAILURES.badRequest, this.reqBody.error);
      return;
    }
    if (n > 0) {
      const part = offset === 0 && n === chunk.length ? chunk : chunk.subarray(offset, offset + n);
      if (!lane.stream.write(part)) {
        this.socket.pause();
        lane.stream.once('drain', this.resumeApp);
      }
    }
    if (!this.reqBody.done) return;
    this.phase = Phase.Await;
    const end = offset + n;
    if (end < chunk.length) this.hold(chunk.subarray(end));
    // The response may have finished first (an app refusing an upload); now the request has too.
    if (this.response.done) this.complete();
  }

  private readonly resumeApp = (): void => {
    if (this.phase === Phase.Body && this.buffered === undefined) this.resumeSocket();
  };

  // ---- lane → app ----

  onLaneData(chunk: Buffer): void {
    if (this.phase === Phase.Closed) return;
    const response = this.response;
    const flowing = response.read(chunk);
    if (response.error !== undefined) {
      this.laneBroke(`${response.error} (on the lane)`);
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
    this.finishExchange(this.responseStatus());
    this.dropLane();
    this.closeGracefully();
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
    if (this.phase === Phase.Closed) return;
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
    this.fail(timedOut ? HTTP_FAILURES.upstreamTimeout : HTTP_FAILURES.upstreamReset, `RST_STREAM ${rstCode}`);
  }

  // ---- ends of an exchange ----

  private complete(): void {
    const res = this.response.head as ResponseHead;
    const req = this.req as RequestHead;
    this.finishExchange(res.status);
    const lane = this.lane;
    this.lane = undefined;
    if (lane !== undefined) {
      this.socket.removeListener('drain', this.resumeLane);
      if (lane.stream.isPaused()) lane.stream.resume();
      this.deps.lanes.give(lane);
    }
    if (!req.keepAlive || !res.keepAlive || this.clientEnded || this.draining) {
      this.closeGracefully();
      return;
    }
    this.nextRequest();
  }

  private nextRequest(): void {
    this.phase = Phase.Head;
    this.req = undefined;
    const pending = this.buffered;
    this.buffered = undefined;
    if (pending !== undefined) this.readHead(pending, 0);
    else this.resumeSocket();
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
    const keep = this.reqBody.done && (this.req?.keepAlive ?? false) && !this.clientEnded && !this.draining;
    this.dropLane();
    this.socket.write(failureResponseBytes(failure, this.correlationId, !keep));
    this.finishExchange(failure.status, false);
    if (keep) this.nextRequest();
    else this.closeGracefully();
  }

  /** The response was cut mid-way (or the request broken): reset the app so it cannot mistake it for complete. */
  private abort(kind: HttpFailureKind, detail?: string): void {
    this.code = kind.code;
    this.deps.http.logger.warn({ correlationId: this.correlationId, destination: this.destination(), code: kind.code, detail }, 'HTTP exchange cut');
    this.dropLane();
    this.finishExchange(this.response.started ? this.responseStatus() : kind.status, false);
    this.phase = Phase.Closed;
    // A framed body (Content-Length, chunked) is visibly short at a FIN, and the app keeps what arrived; a
    // body that runs until close would end cleanly at a FIN, so that app gets a TCP reset.
    if (this.response.untilClose) this.socket.resetAndDestroy();
    else this.socket.destroy();
  }

  private laneBroke(detail: string): void {
    this.dropLane();
    if (this.response.started) this.abort(HTTP_FAILURES.upstreamReset, detail);
    else this.fail(HTTP_FAILURES.upstreamReset, detail);
  }

  private dropLane(): void {
    const lane = this.lane;
    this.lane = undefined;
    if (lane === undefined) return;
    lane.owner = undefined;
    if (!lane.stream.closed) lane.stream.close(RST_CANCEL);
  }

  /** Balancer, metrics and the access log, once per request. */
  private finishExchange(status: number, ok = status < 502 || status > 504): void {
    const endpoint = this.endpoint;
    this.endpoint = undefined;
    if (endpoint !== undefined) this.deps.http.balancer.end(endpoint, ok);
    if (this.req === undefined) return;
    const { method, target } = this.req;
    recordOutboundRequest(this.deps.http, { destination: this.destination(), correlationId: this.correlationId, method, path: target, status, code: this.code, attempts: this.attempts, started: this.started });
    this.req = undefined;
  }

  private destination(): string {
    return this.route === undefined ? '-' : `${this.route.namespace}/${this.route.service}`;
  }

  private refuseAndClose(kind: HttpFailureKind, detail?: string): void {
    const failure = new HttpFailure(kind, detail);
    this.phase = Phase.Closed;
    this.socket.end(failureResponseBytes(failure, nextCorrelationId(), true));
  }

  private closeGracefully(): void {
    this.phase = Phase.Closed;
    this.buffered = undefined;
    this.socket.end();
  }

  private handOver(pending: Buffer): void {
    const { socket } = this;
    socket.removeListener('data', this.onData);
    socket.removeListener('end', this.onEnd);
    socket.removeListener('timeout', this.onTimeout);
    socket.removeListener('close', this.onClose);
    socket.setTimeout(0);
    this.phase = Phase.Closed;
    this.fallback(socket, pending, this.route);
  }

  // ---- the app socket's own events ----

  private readonly onEnd = (): void => {
    this.clientEnded = true;
    if (this.phase === Phase.Head && this.partialHead.empty) this.closeGracefully();
    else if (this.phase === Phase.Body) this.abort(HTTP_FAILURES.badRequest, 'the app ended the connection inside a request body');
  };

  /**
   * The socket's one inactivity timer, set once (no timer calls per request): the head timeout while a head
   * is arriving, else the keep-alive timeout. While a response is awaited the lane's own timer governs.
   */
  private readonly onTimeout = (): void => {
    if (this.phase === Phase.Head && !this.partialHead.empty) {
      this.refuseAndClose(HTTP_FAILURES.requestTimeout);
      return;
    }
    if (this.phase === Phase.Body) {
      this.abort(HTTP_FAILURES.requestTimeout, 'the request body stalled');
      return;
    }
    if (this.phase === Phase.Await) return;
    // An idle kept-alive connection.
    this.phase = Phase.Closed;
    this.socket.destroy();
  };

  private readonly onClose = (): void => {
    if (this.phase === Phase.Closed) {
      this.dropLane();
      return;
    }
    this.phase = Phase.Closed;
    if (this.req !== undefined) {
      this.dropLane();
      const status = this.responseStatus();
      this.finishExchange(status === 0 ? 499 : status, true);
    }
  };
}
