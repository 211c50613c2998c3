/**
 * The state of one inbound lane (lane.ts) and how an exchange on it ends: answered without the app (a
 * refusal, an app failure before the response), finished and recorded, or cut with the lane (a broken
 * message, a revoked permission, shutdown). lane.ts reads requests and responses; this file holds what
 * both directions share and the lane stream's own events (end, timeout, close).
 */
import { constants as h2, type ServerHttp2Stream } from 'node:http2';
import { nextCorrelationId } from '../../core/correlation.js';
import { BodyFramer, type BodyFramerLimits } from '../../http1/body.js';
import { Http1ResponseReader } from '../../http1/response-reader.js';
import type { Http1HeadLimits, RequestHead } from '../../http1/types.js';
import { PartialHead } from '../../http1/partial-head.js';
import { failureResponseBytes } from '../../http1/message.js';
import { HTTP_FAILURES, HttpFailure } from '../../http/errors.js';
import { forbiddenRequestTrailer } from '../../http/header-rules.js';
import type { VerifiedPeer } from '../../core/peer-identity.js';
import type { AppPort } from '../../../api/data-plane.js';
import type { AppHttpPool } from './app-pool.js';
import { appHttpOptions, type ResolvedAppHttpOptions } from './authorization.js';
import type { InboundHttpDeps } from './context.js';
import type { InboundState } from '../inbound-state.js';
import { LaneAppConnection, type LaneAppOwner } from './lane-app-connection.js';
import { recordInboundRequest } from './access.js';
import { cancelStream, failStream } from '../../core/stream-reset.js';
import { LANE_DEFAULTS } from '../../core/limits.js';

export const LANE_HEAD_LIMITS: Http1HeadLimits = Object.freeze({ maxHeadBytes: LANE_DEFAULTS.maxHeadBytes, maxHeaderCount: LANE_DEFAULTS.maxHeaderCount });
export const LANE_BODY_LIMITS: BodyFramerLimits = Object.freeze({ maxChunkLineBytes: LANE_DEFAULTS.maxChunkLineBytes, maxTrailerBytes: LANE_DEFAULTS.maxTrailerBytes });
/** A lane with no request for this long is closed (the caller closes its idle lanes much sooner). */
export const LANE_IDLE_TIMEOUT_MS = LANE_DEFAULTS.inboundIdleTimeoutMs;

export const enum Phase {
  Head,
  /** Forwarding the request body to the app. */
  Body,
  /** Discarding the body of a request that was answered without the app. */
  Skip,
  Await,
  Closed,
}

export abstract class LaneCore implements LaneAppOwner {
  protected phase = Phase.Head;
  /** Lane bytes after the request in flight (the caller sends one at a time, so at most a head's worth). */
  protected buffered: Buffer | undefined;
  protected readonly partialHead = new PartialHead();
  /** performance.now() at the first byte of a head spanning DATA frames (0: none): its total deadline runs from there. */
  protected headSince = 0;
  /** The lane's own app connection. */
  protected readonly app: LaneAppConnection;
  protected appUsed = false;

  protected req: RequestHead | undefined;
  protected headBytes: Buffer | undefined;
  protected readonly reqBody = new BodyFramer(LANE_BODY_LIMITS, forbiddenRequestTrailer);
  /** Frames the app's response and writes it to the lane. */
  protected readonly response: Http1ResponseReader;
  protected holding = false;
  protected correlationId = '';
  protected path = '';
  protected started = 0;
  protected status = 0;
  protected draining = false;
  /** Set while an allowed exchange is in flight: a policy change re-judges it (TunnelServer.setState). */
  protected untrack: (() => void) | undefined;
  protected cutReason: string | undefined;
  protected readonly pool: AppHttpPool;
  /** The app port's path policy, read once per lane (a lane serves one app port). */
  protected readonly options: ResolvedAppHttpOptions;

  constructor(
    protected readonly stream: ServerHttp2Stream,
    protected readonly peer: VerifiedPeer,
    protected readonly appPort: AppPort,
    protected readonly currentState: () => InboundState,
    protected readonly deps: InboundHttpDeps,
  ) {
    this.pool = deps.pools.for(appPort);
    this.options = appHttpOptions(appPort);
    this.app = new LaneAppConnection(this, appPort, this.pool.limits, deps);
    this.response = new Http1ResponseReader({ write: (part) => stream.write(part) }, LANE_HEAD_LIMITS, LANE_BODY_LIMITS);
  }

  /** The app's final status once it answered, else the failure being answered (0: none yet). */
  protected statusNow(): number {
    return this.response.head?.status ?? this.status;
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

  protected appBroke(detail: string): void {
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
  protected answer(failure: HttpFailure, rest: Buffer | undefined, extra?: Readonly<Record<string, string>>, appWasUsed = false): void {
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
  protected answerAndClose(failure: HttpFailure, correlationId: string): void {
    this.status = failure.status;
    if (this.req !== undefined) this.finishExchange(failure.status, failure.code);
    this.phase = Phase.Closed;
    this.app.drop();
    if (this.stream.destroyed) return;
    // After the answer, RST_STREAM(NO_ERROR) (RFC 9113 8.1): whatever the peer still sends is not read.
    this.stream.once('finish', () => this.stream.close(h2.NGHTTP2_NO_ERROR));
    this.stream.end(failureResponseBytes(failure, correlationId, true));
  }

  protected finishExchange(status: number, code?: string): void {
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

  protected closeLane(code: number): void {
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

  protected readonly onStreamEnd = (): void => {
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
  protected readonly onStreamTimeout = (): void => {
    if (this.phase !== Phase.Head) return;
    if (this.headSince !== 0) this.headOverdue();
    else this.closeLane(h2.NGHTTP2_NO_ERROR);
  };

  /** More of a slow head came (or its timer fired): refused past the deadline, else the timer is set to what is left. */
  protected headOverdue(): boolean {
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
  protected readonly cutExchange = (why: string): void => {
    this.cutReason = why;
    this.closeLane(h2.NGHTTP2_CANCEL);
  };

  protected readonly onStreamClose = (): void => {
    this.deps.lanes.delete(this);
    const status = this.statusNow();
    if (this.req !== undefined) this.finishExchange(status === 0 ? 499 : status, this.cutReason);
    this.phase = Phase.Closed;
    this.app.drop();
  };

  /** Reads on from the bytes after an exchange (lane.ts). */
  protected abstract nextRequest(pending: Buffer | undefined): void;
  /** Request body bytes: to the app, or skipped (lane.ts). */
  protected abstract forwardBody(chunk: Buffer, offset: number): void;
  /** Writes the request head (and body bytes that came with it) to the app connection (lane.ts). */
  protected abstract send(rest: Buffer | undefined): void;

  /** Bytes from the app connection in use (LaneAppOwner; lane.ts). */
  abstract onAppData(chunk: Buffer): void;
  /** Shutdown: an idle lane closes now, a busy one after its exchange (lane.ts). */
  abstract drain(): void;
}
