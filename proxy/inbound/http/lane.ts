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
 * state machine (head → admit (lane-admission.ts) → body → await the response → next head); how an exchange
 * ends, and the state both directions share, are lane-core.ts's.
 */
import type { Socket } from 'node:net';
import { constants as h2, type ServerHttp2Stream } from 'node:http2';
import { nextCorrelationId } from '../../core/correlation.js';
import { parseRequestHead } from '../../http1/head.js';
import type { RequestHead, ResponseHead } from '../../http1/types.js';
import { cleanedResponseHead, fieldValue, forwardRequestHead } from '../../http1/message.js';
import { HTTP_FAILURES, HttpFailure } from '../../http/errors.js';
import { acceptableRequestId, REQUEST_ID_HEADER } from '../../http/header-rules.js';
import type { VerifiedPeer } from '../../core/peer-identity.js';
import type { AppPort } from '../../../api/data-plane.js';
import { admitLaneRequest } from './lane-admission.js';
import type { InboundHttpDeps } from './context.js';
import type { InboundState } from '../inbound-state.js';
import { LANE_HEAD_LIMITS, LANE_IDLE_TIMEOUT_MS, LaneCore, Phase } from './lane-core.js';

export { LANE_BODY_LIMITS, LANE_HEAD_LIMITS, LANE_IDLE_TIMEOUT_MS } from './lane-core.js';

export class InboundLane extends LaneCore {
  constructor(
    stream: ServerHttp2Stream,
    peer: VerifiedPeer,
    appPort: AppPort,
    currentState: () => InboundState,
    deps: InboundHttpDeps,
  ) {
    super(stream, peer, appPort, currentState, deps);
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

  protected readHead(data: Buffer, offset: number): void {
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
    const ctx = { peer: this.peer, state: this.currentState(), appPort: this.appPort, deps: this.deps, options: this.options, pool: this.pool };
    const admission = admitLaneRequest(ctx, head, this.correlationId);
    if (admission.path !== undefined) this.path = admission.path;
    if (!admission.allowed) {
      this.answer(admission.failure, rest, admission.extra);
      return;
    }
    this.appUsed = true;
    this.untrack = this.deps.track?.({ request: admission.request, cut: this.cutExchange });
    this.headBytes = forwardRequestHead(data, offset, parsed.length, head, admission.forwardPath, this.correlationId, this.peer.spiffeId);
    this.phase = this.reqBody.done ? Phase.Await : Phase.Body;
    this.send(rest);
  }

  private begin(head: RequestHead): void {
    this.req = head;
    this.started = performance.now();
    this.correlationId = acceptableRequestId(fieldValue(head.fields, REQUEST_ID_HEADER)) ?? nextCorrelationId();
    this.path = head.target;
    this.reqBody.start(head.body);
    this.response.begin(head.method, cleanedResponseHead);
    this.app.beginRequest();
    this.status = 0;
  }

  /** Writes the head (and the body bytes that came with it) to the app connection, opening one if needed. */
  protected send(rest: Buffer | undefined): void {
    const app = this.app.take();
    app.cork();
    app.write(this.headBytes as Buffer);
    if (rest !== undefined) this.forwardBody(rest, 0);
    app.uncork();
  }

  protected forwardBody(chunk: Buffer, offset: number): void {
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

  protected nextRequest(pending: Buffer | undefined): void {
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

}

function noop(): void {}
