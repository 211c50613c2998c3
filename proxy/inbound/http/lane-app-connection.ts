/**
 * The app connection of one inbound lane (inbound/http/lane.ts), apart from the lane's request-by-request state
 * machine: it is opened when the lane's first allowed request arrives and again whenever the app has
 * closed it, so a lane outlives the app's keep-alive timeout. Only the connection in use speaks to the
 * lane: events of one already dropped or replaced are ignored.
 *
 * It keeps what decides the fate of a request the app did not answer: whether the connection was reused
 * (a reused connection that closes before answering a request without a body is retried once on a new
 * one, as node's HTTP client does), and whether it had connected or timed out (which of 502/503/504 the
 * failure is). One object per lane, made with it; the sockets' listeners are set once per connection.
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { AppPort } from '../../../api/data-plane.js';
import { appFailure, type HttpFailure } from '../../http/errors.js';
import { appLocalAddress } from '../app-source.js';
import type { AppPoolLimits } from './app-pool.js';
import type { InboundHttpDeps } from './context.js';

/** What a lane hears from its app connection (only from the one in use). */
export interface LaneAppOwner {
  /** Response bytes from the app. */
  onAppData(chunk: Buffer): void;
  /** The connection closed or failed (`err`); it is already forgotten and destroyed. */
  onAppGone(err: Error | undefined): void;
}

export class LaneAppConnection {
  private current: Socket | undefined;
  private reused = false;
  private retried = false;
  private connected = false;
  private timedOut = false;
  private connectTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly owner: LaneAppOwner,
    private readonly appPort: AppPort,
    private readonly limits: AppPoolLimits,
    private readonly deps: InboundHttpDeps,
  ) {}

  /** The connection in use, if any: the lane writes its request to it and applies backpressure. */
  get socket(): Socket | undefined {
    return this.current;
  }

  /** A new request on the lane: not retried yet, and the app has not timed out on it. */
  beginRequest(): void {
    this.retried = false;
    this.timedOut = false;
  }

  /** The connection to send the request on: the one in use (reused), or a new one. */
  take(): Socket {
    const socket = this.current;
    this.reused = socket !== undefined;
    return socket ?? this.open();
  }

  /**
   * Whether the request may be sent again, and if so counts the one retry: only after a reused connection
   * closed without a timeout (the caller checks that the request has no body).
   */
  claimRetry(): boolean {
    if (!this.reused || this.retried || this.timedOut) return false;
    this.retried = true;
    return true;
  }

  /** The app closed the connection itself (no error, no timeout): the end of a close-delimited response. */
  closedCleanly(err: Error | undefined): boolean {
    return err === undefined && !this.timedOut;
  }

  /** The failure for a request the app did not answer (logged here with the request's correlation id). */
  failure(err: Error | undefined, correlationId: string): HttpFailure {
    const failure = appFailure(err ?? Object.assign(new Error('the app closed the connection'), { code: 'ECONNRESET' }), this.timedOut, this.connected);
    this.deps.logger.warn({ correlationId, code: failure.code, err: err?.message, port: this.appPort.port }, 'http request to app failed');
    return failure;
  }

  /** Forgets and destroys the connection in use, if any (the lane gets no event for it). */
  drop(): void {
    const app = this.current;
    this.current = undefined;
    clearTimeout(this.connectTimer);
    app?.destroy();
  }

  private open(): Socket {
    const localAddress = appLocalAddress(this.appPort.host, this.deps.appSource);
    const app = netConnect({ host: this.appPort.host, port: this.appPort.port, noDelay: true, ...(localAddress === undefined ? {} : { localAddress }) });
    // Set once: silence this long fails a request in flight (504) and drops an idle connection.
    app.setTimeout(this.limits.requestIdleTimeoutMs);
    this.current = app;
    this.connected = false;
    this.connectTimer = setTimeout(() => {
      this.timedOut = true;
      app.destroy();
    }, this.limits.connectTimeoutMs);
    app.once('connect', () => {
      this.connected = true;
      clearTimeout(this.connectTimer);
    });
    app.on('data', (chunk: Buffer) => {
      if (this.current === app) this.owner.onAppData(chunk);
    });
    app.on('timeout', () => {
      this.timedOut = true;
      app.destroy();
    });
    app.on('error', (err: Error) => this.gone(app, err));
    app.once('close', () => this.gone(app, undefined));
    return app;
  }

  private gone(app: Socket, err: Error | undefined): void {
    if (this.current !== app) return;
    clearTimeout(this.connectTimer);
    this.current = undefined;
    app.destroy();
    this.owner.onAppGone(err);
  }
}
