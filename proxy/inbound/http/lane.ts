/**
 * One lane at the inbound sidecar: a CONNECT stream marked `trellis-lane: http/1.1` carrying the caller
 * sidecar's HTTP/1.1 requests one after another (outbound/http/lane-pool.ts on the other side).
 *
 * Each request is framed and authorized on its own, with the policy in force when its head arrives,
 * before the app sees a byte: a refusal is a 403 on the lane (its body is skipped, the lane goes on). An
 * allowed request goes to the app over this lane's own app connection (inbound/http/lane-app-connection.ts: opened on
 * demand, reopened when the app closes it, a request without a body retried once); the head is
 * re-serialised with the verified caller in `x-forwarded-client-cert`, the body passes through unchanged,
 * and the response comes back byte for byte (minus any `trellis-*` field the app tried to send). Any other
 * app failure before the response is a 502/503/504 on the lane with a stable code. This file is the lane's
 * state machine (head → authorize → body → await the response → next head) and how an exchange ends.
 */
import type { Socket } from 'node:net';
import { constants as h2, type ServerHttp2Stream } from 'node:http2';
import { nextCorrelationId } from '../../core/correlation.js';
import { BodyFramer, type BodyFramerLimits } from '../../http1/body.js';
import { parseRequestHead } from '../../http1/head.js';
import { Http1ResponseReader } from '../../http1/response-reader.js';
import type { Http1HeadLimits, RequestHead, ResponseHead } from '../../http1/types.js';
import { PartialHead } from '../../http1/partial-head.js';
import { failureResponseBytes, fieldValue, responseNeedsCleaning, forwardRequestHead, serializeResponseHead } from '../../http1/message.js';
import { HTTP_FAILURES, HttpFailure } from '../../http/errors.js';
import { acceptableRequestId, forbiddenRequestTrailer, REQUEST_ID_HEADER } from '../../http/header-rules.js';
import type { VerifiedPeer } from '../../core/peer-identity.js';
import { DENIED_BY_HEADER } from '../../core/tunnel-protocol.js';
import type { AppPort } from '../../../api/data-plane.js';
import type { AppHttpPool } from './app-pool.js';
import { appHttpOptions, authorizeHttp, forwardTarget, httpAuthorizationRequest, type ResolvedAppHttpOptions } from './authorization.js';
import type { InboundHttpDeps } from './context.js';
import type { InboundState } from '../inbound-state.js';
import { deciderOf } from '../tcp/stream-refusal.js';
import { LaneAppConnection, type LaneAppOwner } from './lane-app-connection.js';
import { recordInboundRequest } from './access.js';
import { cancelStream, failStream } from '../../core/stream-reset.js';
import { LANE_DEFAULTS } from '../../core/limits.js';

export const LANE_HEAD_LIMITS: Http1HeadLimits = Object.freeze({ maxHeadBytes: LANE_DEFAULTS.maxHeadBytes, maxHeaderCount: LANE_DEFAULTS.maxHeaderCount });
export const LANE_BODY_LIMITS: BodyFramerLimits = Object.freeze({ maxChunkLineBytes: LANE_DEFAULTS.maxChunkLineBytes, maxTrailerBytes: LANE_DEFAULTS.maxTrailerBytes });
/** A lane with no request for this long is closed (the caller closes its idle lanes much sooner). */
export const LANE_IDLE_TIMEOUT_MS = LANE_DEFAULTS.inboundIdleTimeoutMs;

const enum Phase {
  Head,
  /** Forwarding the request body to the app. */
  Body,
  /** Discarding the body of a request that was answered without the app. */
  Skip,
  Await,
  Closed,
}

/** An app may not send `trellis-*` fields, nor Content-Length beside chunked coding: such a head is re-written. */
function cleanRewrite(head: ResponseHead): Buffer | undefined {
  return responseNeedsCleaning(head) ? serializeResponseHead(head, { dropMeshFields: true, close: false }) : undefined;
}

export class InboundLane implements LaneAppOwner {
  private phase = Phase.Head;
  /** Lane bytes after the request in flight (the caller sends one at a time, so at most a head's worth). */
  private buffered: Buffer | undefined;
  private readonly partialHead = new PartialHead();
  /** performance.now() at the first byte of a head spanning DATA frames (0: none): its total deadline runs from there. */
  private headSince = 0;
  /** The lane's own app connection. */
  private readonly app: LaneAppConnection;
  private appUsed = false;

  private req: RequestHead | undefined;
  private headBytes: Buffer | undefined;
  private readonly reqBody = new BodyFramer(LANE_BODY_LIMITS, forbiddenRequestTrailer);
  /** Frames the app's response and writes it to the lane. */
  private readonly response: Http1ResponseReader;
  private holding = false;
  private correlationId = '';
  private path = '';
  private started = 0;
  private status = 0;
  private draining = false;
  /** Set while an allowed exchange is in flight: a policy change re-judges it (TunnelServer.setState). */
  private untrack: (() => void) | undefined;
  private cutReason: string | undefined;
  private readonly pool: AppHttpPool;
  /** The app port's path policy, read once per lane (a lane serves one app port). */
  private readonly options: ResolvedAppHttpOptions;

  constructor(
    private readonly stream: ServerHttp2Stream,
    private readonly peer: VerifiedPeer,
    private readonly appPort: AppPort,
    private readonly currentState: () => InboundState,
    private readonly deps: InboundHttpDeps,
  ) {
    this.pool = deps.pools.for(appPort);
    this.options = appHttpOptions(appPort);
    this.app = new LaneAppConnection(this, appPort, this.pool.limits, deps);
    this.response = new Http1ResponseReader({ write: (part) => stream.write(part) }, LANE_HEAD_LIMITS, LANE_BODY_LIMITS);
    stream.on('data', this.onStreamData);
    stream.on('error', noop);
    stream.once('close', this.onStreamClose);
    stream.on('end', this.onStreamEnd);
    stream.on('timeout', this.onStreamTimeout);
    stream.setTimeout(LANE_IDLE_TIMEOUT_MS);
    deps.lanes.add(this);
    stream.respond({ ':status': 200 });
  }

  /** Shutdown: an idle lane closes now, a busy one after its exchange, so the caller's session can finish. */
  drain(): void {
    this.draining = true;
    if (this.phase === Phase.Head && this.partialHead.empty) this.closeLane(h2.NGHTTP2_NO_ERROR);
  }

  // ---- caller → app ----

  private readonly onStreamData = (chunk: Buffer): void => {
    switch (this.phase) {
      case Phase.Head: {
        if (this.headSince !== 0 && this.headOverdue()) return;
        const data = this.partialHead.push(chunk, LANE_HEAD_LIMITS.maxHeadBytes);
        if (data !== undefined) this.readHead(data, 0);
        return;
      }
      case Phase.Body:
      case Phase.Skip:
        this.forwardBody(chunk, 0);
        return;
      case Phase.Await:
        this.hold(chunk);
        return;
      default:
        return;
    }
  };

  private hold(chunk: Buffer): void {
    this.buffered = this.buffered === undefined ? chunk : Buffer.concat([this.buffered, chunk]);
    if (this.buffered.length > LANE_HEAD_LIMITS.maxHeadBytes) {
      // The caller sends one request at a time; more than a head's worth ahead breaks the lane's contract.
      this.closeLane(h2.NGHTTP2_PROTOCOL_ERROR);
      return;
    }
    this.holding = true;
    this.stream.pause();
  }

  private readHead(data: Buffer, offset: number): void {
    const parsed = parseRequestHead(data, offset, data.length, LANE_HEAD_LIMITS);
    if (!parsed.ok) {
      if (parsed.incomplete) {
        this.partialHead.hold(offset === 0 ? data : data.subarray(offset));
        if (this.headSince === 0) {
          this.headSince = performance.now();
          this.stream.setTimeout(this.deps.laneHeadTimeoutMs);
        }
        return;
      }
      const kind = parsed.status === 431 ? HTTP_FAILURES.headTooLarge : HTTP_FAILURES.badRequest;
      this.answerAndClose(new HttpFailure(kind, parsed.reason), nextCorrelationId());
      return;
    }
    const head = parsed.head;
    if (this.headSince !== 0) {
      this.headSince = 0;
      this.stream.setTimeout(LANE_IDLE_TIMEOUT_MS);
    }
    const rest = offset + parsed.length < data.length ? data.subarray(offset + parsed.length) : undefined;
    this.begin(head);
    if (head.upgrade || head.minorVersion === 0) {
      this.answerAndClose(new HttpFailure(HTTP_FAILURES.badRequest, 'a lane carries HTTP/1.1 requests without upgrades'), this.correlationId);
      return;
    }
    const targets = forwardTarget(head.method, head.target, this.options);
    if (targets === null) {
      this.answer(new HttpFailure(HTTP_FAILURES.badPath), rest);
      return;
    }
    this.path = targets.policyPath;
    const state = this.currentState();
    const ctx = { peer: this.peer, state, appPort: this.appPort, deps: this.deps };
    const authRequest = httpAuthorizationRequest(ctx, head.method, targets.policyPath);
    const decision = authorizeHttp(ctx, authRequest, this.correlationId);
    if (!decision.allowed) {
      const decider = deciderOf(decision);
      this.answer(new HttpFailure(HTTP_FAILURES.denied, `${decision.reason} (${decider})`), rest, { [DENIED_BY_HEADER]: decider });
      return;
    }
    try {
      this.pool.acquire();
    } catch (err) {
      this.answer(err as HttpFailure, rest);
      return;
    }
    this.appUsed = true;
    this.untrack = this.deps.track?.({ request: authRequest, cut: this.cutExchange });
    this.headBytes = forwardRequestHead(data, offset, parsed.length, head, targets.forwardPath, this.correlationId, this.peer.spiffeId);
    this.phase = this.reqBody.done ? Phase.Await : Phase.Body;
    this.send(rest);
  }

  private begin(head: RequestHead): void {
    this.req = head;
    this.started = performance.now();
    this.correlationId = acceptableRequestId(fieldValue(head.fields, REQUEST_ID_HEADER)) ?? nextCorrelationId();
    this.path = head.target;
    this.reqBody.start(head.body);
    this.response.begin(head.method, cleanRewrite);
    this.app.beginRequest();
    this.status = 0;
  }

  /** Writes the head (and the body bytes that came with it) to the app connection, opening one if needed. */
  private send(rest: Buffer | undefined): void {
    const app = this.app.take();
    app.cork();
    app.write(this.headBytes as Buffer);
    if (rest !== undefined) this.forwardBody(rest, 0);
    app.uncork();
  }

  private forwardBody(chunk: Buffer, offset: number): void {
    const n = this.reqBody.consume(chunk, offset, chunk.length);
    if (this.reqBody.error !== undefined) {
      if (this.response.started) {
        // The app's answer is already on the lane: a 400 now would land inside it. The lane is reset instead.
        this.finishExchange(this.statusNow(), HTTP_FAILURES.badRequest.code);
        this.closeLane(h2.NGHTTP2_INTERNAL_ERROR);
      } else {
        this.answerAndClose(new HttpFailure(HTTP_FAILURES.badRequest, this.reqBody.error), this.correlationId);
      }
      return;
    }
    const app = this.app.socket;
    if (n > 0 && this.phase === Phase.Body && app !== undefined) {
      const part = offset === 0 && n === chunk.length ? chunk : chunk.subarray(offset, offset + n);
      if (!app.write(part)) {
        this.stream.pause();
        app.once('drain', this.resumeStream);
      }
    }
    if (!this.reqBody.done) return;
    const end = offset + n;
    const rest = end < chunk.length ? chunk.subarray(end) : undefined;
    if (this.phase === Phase.Skip) {
      this.nextRequest(rest);
      return;
    }
    this.phase = Phase.Await;
    if (rest !== undefined) this.hold(rest);
    if (this.response.done) this.complete();
  }

  private readonly resumeStream = (): void => {
    if (!this.holding) this.stream.resume();
  };

  // ---- app → caller ----

  /** Bytes from the app connection in use (LaneAppOwner). */
  onAppData(chunk: Buffer): void {
    if (this.phase === Phase.Closed || this.req === undefined || this.phase === Phase.Skip) {
      // Bytes with no request asking: the app broke HTTP/1.1; this connection cannot be trusted again.
      this.app.drop();
      return;
    }
    const response = this.response;
    const flowing = response.read(chunk);
    if (response.error !== undefined) {
      this.appBroke(response.error);
      return;
    }
    if (!response.done) {
      if (!flowing) {
        (this.app.socket as Socket).pause();
        this.stream.once('drain', this.resumeApp);
      }
      return;
    }
    if (response.trailing) this.app.drop(); // bytes after a complete response: never reuse this connection
    if (this.phase === Phase.Await) {
      this.complete();
    } else if (this.phase === Phase.Body && this.app.socket === undefined) {
      // An early response, and the connection it came on is gone: the rest of the body is skipped.
      this.finishExchange(this.statusNow());
      this.phase = Phase.Skip;
    }
  }

  /** The app's final status once it answered, else the failure being answered (0: none yet). */
  private statusNow(): number {
    return this.response.head?.status ?? this.status;
  }

  private readonly resumeApp = (): void => {
    this.app.socket?.resume();
  };

  // ---- ends of an exchange ----

  private complete(): void {
    const res = this.response.head as ResponseHead;
    this.finishExchange(res.status);
    if (!res.keepAlive) this.app.drop();
    else {
      const app = this.app.socket;
      if (app !== undefined) {
        this.stream.removeListener('drain', this.resumeApp);
        if (app.isPaused()) app.resume();
      }
    }
    const pending = this.buffered;
    this.buffered = undefined;
    this.nextRequest(pending);
  }

  private nextRequest(pending: Buffer | undefined): void {
    if (this.draining && pending === undefined) {
      this.closeLane(h2.NGHTTP2_NO_ERROR);
      return;
    }
    this.phase = Phase.Head;
    this.req = undefined;
    if (this.holding) {
      this.holding = false;
      this.stream.resume();
    }
    if (pending !== undefined) this.readHead(pending, 0);
  }

  /** The app connection closed or failed (LaneAppOwner). Idle: nothing to do. In an exchange: retry, answer, or cut the stream. */
  onAppGone(err: Error | undefined): void {
    if (this.phase === Phase.Closed || this.req === undefined || this.phase === Phase.Skip || this.phase === Phase.Head) return;
    if (this.response.untilClose && this.app.closedCleanly(err)) {
      // A response delimited by the close of the connection: complete now, and so is the lane.
      this.finishExchange(this.statusNow());
      this.phase = Phase.Closed;
      this.stream.end();
      return;
    }
    if (this.response.started) {
      this.finishExchange(this.statusNow());
      this.closeLane(h2.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    if (this.req.body.kind === 'none' && this.app.claimRetry()) {
      this.send(undefined);
      return;
    }
    const failure = this.app.failure(err, this.correlationId);
    if (this.reqBody.done) this.answer(failure, this.buffered, undefined, true);
    else this.answerAndClose(failure, this.correlationId);
  }

  private appBroke(detail: string): void {
    this.app.drop();
    if (this.response.started) {
      this.finishExchange(this.statusNow());
      this.closeLane(h2.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    const failure = new HttpFailure(HTTP_FAILURES.appBadResponse, detail);
    if (this.reqBody.done) this.answer(failure, this.buffered, undefined, true);
    else this.answerAndClose(failure, this.correlationId);
  }

  /**
   * Answers the current request without the app (a refusal or an app failure) and goes on with the lane:
   * a body still to come is skipped.
   */
  private answer(failure: HttpFailure, rest: Buffer | undefined, extra?: Readonly<Record<string, string>>, appWasUsed = false): void {
    if (appWasUsed) this.buffered = undefined;
    this.status = failure.status;
    this.stream.write(failureResponseBytes(failure, this.correlationId, false, extra));
    this.finishExchange(failure.status, failure.code);
    if (this.reqBody.done) {
      this.nextRequest(rest);
      return;
    }
    this.phase = Phase.Skip;
    if (rest !== undefined) this.forwardBody(rest, 0);
  }

  /** Answers with `Connection: close`, then ends the lane: what follows on it cannot be framed. */
  private answerAndClose(failure: HttpFailure, correlationId: string): void {
    this.status = failure.status;
    if (this.req !== undefined) this.finishExchange(failure.status, failure.code);
    this.phase = Phase.Closed;
    this.app.drop();
    if (this.stream.destroyed) return;
    // After the answer, RST_STREAM(NO_ERROR) (RFC 9113 8.1): whatever the peer still sends is not read.
    this.stream.once('finish', () => this.stream.close(h2.NGHTTP2_NO_ERROR));
    this.stream.end(failureResponseBytes(failure, correlationId, true));
  }

  private finishExchange(status: number, code?: string): void {
    const req = this.req;
    if (req === undefined) return;
    this.req = undefined;
    if (this.untrack !== undefined) {
      this.untrack();
      this.untrack = undefined;
    }
    if (this.appUsed) {
      this.appUsed = false;
      this.pool.release();
    }
    recordInboundRequest(this.deps, { peer: this.peer, local: this.currentState().local, correlationId: this.correlationId, method: req.method, path: this.path, status, code, started: this.started });
  }

  private closeLane(code: number): void {
    this.phase = Phase.Closed;
    this.app.drop();
    if (this.stream.destroyed) return;
    // A reset goes alone (stream-reset.ts): after END_STREAM the caller would take a response that runs
    // until close for a complete one.
    if (code === h2.NGHTTP2_NO_ERROR) this.stream.close(code);
    else if (code === h2.NGHTTP2_CANCEL) cancelStream(this.stream);
    else failStream(this.stream);
  }

  // ---- the lane's own events ----

  private readonly onStreamEnd = (): void => {
    // The caller ends a lane only when it is idle; an exchange in flight is cut by 'close'.
    if (this.phase === Phase.Head) {
      this.phase = Phase.Closed;
      this.app.drop();
      if (!this.stream.destroyed) this.stream.end();
    }
  };

  /**
   * The lane's one inactivity timer, set once: an idle lane closes; a busy one is the app timer's business.
   * While a head spans frames it is the head's deadline (a trickled head is refused 408, as outbound).
   */
  private readonly onStreamTimeout = (): void => {
    if (this.phase !== Phase.Head) return;
    if (this.headSince !== 0) this.headOverdue();
    else this.closeLane(h2.NGHTTP2_NO_ERROR);
  };

  /** More of a slow head came (or its timer fired): refused past the deadline, else the timer is set to what is left. */
  private headOverdue(): boolean {
    const left = this.headSince + this.deps.laneHeadTimeoutMs - performance.now();
    if (left > 0) {
      this.stream.setTimeout(Math.ceil(left));
      return false;
    }
    this.headSince = 0;
    this.answerAndClose(new HttpFailure(HTTP_FAILURES.requestTimeout, 'the request head was not complete in time'), nextCorrelationId());
    return true;
  }

  /**
   * Permission for the request in flight was revoked (or shutdown's grace ran out): the lane is reset, as
   * a half-done exchange cannot be framed back into a reusable lane; the caller sees its request fail.
   */
  private readonly cutExchange = (why: string): void => {
    this.cutReason = why;
    this.closeLane(h2.NGHTTP2_CANCEL);
  };

  private readonly onStreamClose = (): void => {
    this.deps.lanes.delete(this);
    const status = this.statusNow();
    if (this.req !== undefined) this.finishExchange(status === 0 ? 499 : status, this.cutReason);
    this.phase = Phase.Closed;
    this.app.drop();
  };
}

function noop(): void {}
