/**
 * One app connection on the outbound HTTP fast path: the app's HTTP/1.1 requests are framed here (no
 * node:http objects), each is balanced on its own, written to a lane (outbound/http/lane-pool.ts) to the chosen
 * endpoint, and the response bytes are framed on the way back and written to the app unchanged.
 *
 * This file holds the connection: the app socket's events and timers, request heads, the bytes held
 * between requests, and what follows an exchange (the next request, a close, a reset). The request in
 * flight, from the lane it rides to its accounting, is a `LaneExchange` (outbound/http/lane-exchange.ts), one per
 * connection.
 *
 * One request at a time per connection: pipelined requests wait in the socket (it is paused) until the
 * response before them is written, so responses keep request order and at most one read chunk is held.
 * Bodies are never copied: chunks go on as they arrive, with backpressure both ways (a full lane pauses
 * the app socket; a slow app pauses the lane, and HTTP/2 flow control pushes back to the peer).
 *
 * Anything this path does not carry — Upgrade, Expect: 100-continue, CONNECT, HTTP/1.0 — hands the
 * connection on, at that request, to the node:http path (node-http-path.ts `takeOver`), which carries each
 * request as an HTTP/2 request; it never comes back.
 */
import type { Socket } from 'node:net';
import { nextCorrelationId } from '../../core/correlation.js';
import { parseRequestHead } from '../../http1/head.js';
import { PartialHead } from '../../http1/partial-head.js';
import { failureResponseBytes } from '../../http1/message.js';
import { HTTP_FAILURES, HttpFailure, type HttpFailureKind } from '../../http/errors.js';
import { LaneExchange } from './lane-exchange.js';
import type { ExchangeOwner, FastPathDeps } from './fast-path.js';
import type { OutboundRoute } from '../route.js';
import type { NodeHttpPath } from './node-http-path.js';

export type { FastPathDeps } from './fast-path.js';


/** App bytes kept while they cannot go on, before the socket is paused. */
const HOLD_LIMIT = 64 * 1024;

const enum Phase {
  Head,
  Body,
  Await,
  Closed,
}

export class Http1AppConnection implements ExchangeOwner {
  private phase = Phase.Head;
  /** App bytes read but not yet handled: requests after the one in flight. */
  private buffered: Buffer | undefined;
  /** A request head still arriving. */
  private readonly partialHead = new PartialHead();
  private clientEnded = false;
  private draining = false;
  /** The socket's inactivity timer is the (shorter) head timeout while a head is arriving. */
  private headTimer = false;
  /**
   * performance.now() at the first byte of a head still arriving (0: none). The head timeout is a total
   * deadline from there, not inactivity: a head sent a byte a second would otherwise hold the connection
   * for hours. Set only when a head spans reads, so a head read whole costs nothing.
   */
  private headSince = 0;
  /** The request in flight (reused for each request). */
  private readonly exchange: LaneExchange;

  constructor(
    private readonly socket: Socket,
    private readonly resolve: () => OutboundRoute | undefined,
    private readonly deps: FastPathDeps,
    /** Where a connection goes on at a request this path does not carry. */
    private readonly nodeHttp: Pick<NodeHttpPath, 'takeOver'>,
  ) {
    this.exchange = new LaneExchange(socket, deps, this);
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

  // ---- app → exchange ----

  private readonly onData = (chunk: Buffer): void => {
    switch (this.phase) {
      case Phase.Head: {
        if (this.headSince !== 0 && this.headOverdue()) return;
        const data = this.partialHead.push(chunk, this.deps.headLimits.maxHeadBytes);
        if (data !== undefined) this.readHead(data, 0);
        return;
      }
      case Phase.Body:
        if (this.exchange.laneAttached) this.exchange.sendBody(chunk, 0);
        else this.hold(chunk);
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
        if (this.headSince === 0) {
          this.headSince = performance.now();
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
    this.headSince = 0;
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
    this.exchange.begin(head, route, data, offset, parsed.length);
    this.phase = this.exchange.requestDone ? Phase.Await : Phase.Body;
    this.buffered = end < data.length ? data.subarray(end) : undefined;
    this.exchange.acquireLane(false);
  }

  /**
   * Bytes of a slow head arrived: past its deadline it is refused (408, close); otherwise the inactivity
   * timer is re-armed to what is left, so silence after a trickle also ends at the deadline. Only heads
   * that span reads come here.
   */
  private headOverdue(): boolean {
    const left = this.headSince + this.deps.http.limits.headersTimeoutMs - performance.now();
    if (left <= 0) {
      this.headSince = 0;
      this.refuseAndClose(HTTP_FAILURES.requestTimeout, 'the request head was not complete in time');
      return true;
    }
    this.socket.setTimeout(Math.ceil(left));
    return false;
  }

  // ---- what the exchange asks of the connection (ExchangeOwner) ----

  get closed(): boolean {
    return this.phase === Phase.Closed;
  }

  get keepsAlive(): boolean {
    return !this.clientEnded && !this.draining;
  }

  takeHeldBody(): Buffer | undefined {
    if (this.phase !== Phase.Body) return undefined;
    const body = this.buffered;
    this.buffered = undefined;
    return body;
  }

  requestEnded(rest: Buffer | undefined): void {
    this.phase = Phase.Await;
    if (rest !== undefined) this.hold(rest);
  }

  readonly resumeApp = (): void => {
    if (this.phase === Phase.Body && this.buffered === undefined) this.resumeSocket();
  };

  exchangeEnded(keepAlive: boolean): void {
    if (keepAlive) this.nextRequest();
    else this.closeGracefully();
  }

  cut(reset: boolean): void {
    this.phase = Phase.Closed;
    if (reset) this.socket.resetAndDestroy();
    else this.socket.destroy();
  }

  // ---- between requests and at the end ----

  private nextRequest(): void {
    this.phase = Phase.Head;
    const pending = this.buffered;
    this.buffered = undefined;
    if (pending !== undefined) this.readHead(pending, 0);
    else this.resumeSocket();
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
    this.nodeHttp.takeOver(socket, pending, this.exchange.lastRoute());
  }

  // ---- the app socket's own events ----

  private readonly onEnd = (): void => {
    this.clientEnded = true;
    if (this.phase === Phase.Head && this.partialHead.empty) this.closeGracefully();
    else if (this.phase === Phase.Body) this.exchange.abort(HTTP_FAILURES.badRequest, 'the app ended the connection inside a request body');
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
      this.exchange.abort(HTTP_FAILURES.requestTimeout, 'the request body stalled');
      return;
    }
    if (this.phase === Phase.Await) return;
    // An idle kept-alive connection.
    this.phase = Phase.Closed;
    this.socket.destroy();
  };

  private readonly onClose = (): void => {
    if (this.phase === Phase.Closed) {
      this.exchange.dropLane();
      return;
    }
    this.phase = Phase.Closed;
    this.exchange.appLeft();
  };
}
