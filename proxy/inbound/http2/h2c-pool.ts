/**
 * The inbound sidecar's HTTP/2 (h2c, prior knowledge) connections to its local app, one set per app port:
 * a few connections (`maxConnections`, 4), each carrying at most `maxStreamsPerConnection` (100) streams or
 * fewer when the app's SETTINGS_MAX_CONCURRENT_STREAMS says so. A request takes the least busy connection
 * with room; when all are full another opens, up to the bound, then requests wait in a bounded queue
 * (`maxPending`, 1,024: beyond it `503 TRELLIS_HTTP_APP_OVERLOADED` at once). A connection that receives
 * GOAWAY leaves rotation at once (its streams finish); one idle for `idleTimeoutMs` is closed. Connecting
 * must succeed within `connectTimeoutMs`; a refusal fails the waiting requests with `503
 * TRELLIS_HTTP_APP_UNAVAILABLE`, which the caller's sidecar may retry on another endpoint.
 */
import { connect as h2connect, type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import { connect as netConnect } from 'node:net';
import type { AppPort } from '../../../api/data-plane.js';
import { appFailure, HTTP_FAILURES, HttpFailure } from '../../http/errors.js';
import { appLocalAddress, type AppDialSource } from '../app-source.js';
import { H2C_POOL_DEFAULTS } from '../../core/limits.js';

export interface H2cPoolLimits {
  readonly maxConnections: number;
  readonly maxStreamsPerConnection: number;
  readonly maxPending: number;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxHeaderListSize: number;
  readonly streamWindowBytes: number;
}

/** The schema's defaults (core/limits.ts `H2C_POOL_LIMIT_SCHEMA`, in the operations doc's limit table). */
export const DEFAULT_H2C_POOL_LIMITS: H2cPoolLimits = H2C_POOL_DEFAULTS;

interface Conn {
  readonly session: ClientHttp2Session;
  ready: boolean;
  usable: boolean;
  active: number;
  /** Streams it may carry: our bound, or less when the app's SETTINGS say so (kept from 'remoteSettings'). */
  capacity: number;
  /** Every stream's 'close' listener: one function per connection, not a closure per stream. */
  readonly streamClosed: () => void;
}

interface Waiter {
  readonly headers: OutgoingHttpHeaders;
  readonly options: { endStream: boolean; waitForTrailers?: boolean };
  readonly resolve: (stream: ClientHttp2Stream) => void;
  readonly reject: (err: HttpFailure) => void;
}

export class H2cAppPool {
  private readonly conns: Conn[] = [];
  private readonly waiting: Waiter[] = [];
  private closed = false;

  constructor(
    readonly appPort: AppPort,
    readonly limits: H2cPoolLimits,
    private readonly source: AppDialSource | undefined,
  ) {}

  /** A stream to the app, now or when a connection has room; rejects with the failure the caller is told. */
  request(headers: OutgoingHttpHeaders, options: { endStream: boolean; waitForTrailers?: boolean }): Promise<ClientHttp2Stream> {
    return new Promise((resolve, reject) => this.openStream(headers, options, resolve, reject));
  }

  /**
   * `request` without a promise, for the request path: `opened` is called at once when a connection has
   * room (the common case: no promise, no microtask), else when one has; `failed` with the failure the
   * caller is told. Exactly one of them is called.
   */
  openStream(headers: OutgoingHttpHeaders, options: { endStream: boolean; waitForTrailers?: boolean }, opened: (stream: ClientHttp2Stream) => void, failed: (err: HttpFailure) => void): void {
    if (this.closed) {
      failed(new HttpFailure(HTTP_FAILURES.appUnavailable, 'shutting down'));
      return;
    }
    const waiter: Waiter = { headers, options, resolve: opened, reject: failed };
    if (this.tryStart(waiter)) return;
    if (this.waiting.length >= this.limits.maxPending) {
      failed(new HttpFailure(HTTP_FAILURES.appOverloaded, `${this.waiting.length} requests waiting for port ${this.appPort.port}`));
      return;
    }
    this.waiting.push(waiter);
    this.growIfNeeded();
  }

  get connectionCount(): number {
    return this.conns.length;
  }

  close(): void {
    this.closed = true;
    for (const c of [...this.conns]) c.session.destroy();
    for (const w of this.waiting.splice(0)) w.reject(new HttpFailure(HTTP_FAILURES.appUnavailable, 'shutting down'));
  }

  private tryStart(w: Waiter): boolean {
    let best: Conn | undefined;
    for (const c of this.conns) {
      if (!c.ready || !c.usable || c.session.closed || c.session.destroyed || c.active >= c.capacity) continue;
      if (best === undefined || c.active < best.active) best = c;
    }
    if (best === undefined) return false;
    let stream: ClientHttp2Stream;
    try {
      stream = best.session.request(w.headers, w.options);
    } catch (err) {
      best.usable = false;
      w.reject(appFailure(err, false, true));
      return true;
    }
    best.active += 1;
    stream.once('close', best.streamClosed);
    w.resolve(stream);
    return true;
  }

  private pump(): void {
    while (this.waiting.length > 0 && this.tryStart(this.waiting[0] as Waiter)) this.waiting.shift();
    this.growIfNeeded();
  }

  /** Requests wait and every connection is full: one more opens (one at a time), up to the bound. */
  private growIfNeeded(): void {
    if (this.waiting.length === 0 || this.closed) return;
    const usable = this.conns.filter((c) => c.usable);
    if (usable.length < this.limits.maxConnections && usable.every((c) => c.ready)) this.open();
  }

  private open(): void {
    const { host, port } = this.appPort;
    const localAddress = appLocalAddress(host, this.source);
    const session = h2connect(`http://${host.includes(':') ? `[${host}]` : host}:${port}`, {
      createConnection: () => netConnect({ host, port, noDelay: true, ...(localAddress === undefined ? {} : { localAddress }) }),
      settings: { enablePush: false, maxHeaderListSize: this.limits.maxHeaderListSize, initialWindowSize: this.limits.streamWindowBytes },
      maxHeaderListPairs: 256,
    });
    const conn: Conn = {
      session, ready: false, usable: true, active: 0, capacity: 0,
      streamClosed: () => {
        conn.active -= 1;
        this.pump();
      },
    };
    this.conns.push(conn);
    const timer = setTimeout(() => session.destroy(new HttpFailure(HTTP_FAILURES.appConnectTimeout)), this.limits.connectTimeoutMs);
    session.on('error', (err: Error) => {
      if (!conn.ready) this.failWaiting(appFailure(err, err instanceof HttpFailure, false));
    });
    // Used from the app's first SETTINGS on (not at 'connect'): before it, its stream bound is unknown and
    // streams beyond it would be refused. Later SETTINGS may lower the bound, or raise it: waiters may fit now.
    session.on('remoteSettings', (settings) => {
      clearTimeout(timer);
      conn.capacity = Math.min(this.limits.maxStreamsPerConnection, settings.maxConcurrentStreams ?? Infinity);
      conn.ready = true;
      this.pump();
    });
    session.once('goaway', () => {
      conn.usable = false;
      this.pump();
    });
    session.setTimeout(this.limits.idleTimeoutMs, () => {
      if (conn.active === 0) session.close();
    });
    session.once('close', () => {
      clearTimeout(timer);
      conn.usable = false;
      const i = this.conns.indexOf(conn);
      if (i >= 0) this.conns.splice(i, 1);
      if (!conn.ready) this.failWaiting(new HttpFailure(HTTP_FAILURES.appUnavailable, 'the app closed the HTTP/2 connection'));
      else this.pump();
    });
    session.unref();
  }

  /** A connection could not be opened: nothing else is opening, so the requests waiting fail now. */
  private failWaiting(failure: HttpFailure): void {
    if (this.conns.some((c) => c.ready && c.usable)) return;
    for (const w of this.waiting.splice(0)) w.reject(failure);
  }
}

/** The pools of one sidecar, by app port. */
export class H2cAppPools {
  private readonly pools = new Map<string, H2cAppPool>();

  constructor(
    readonly limits: H2cPoolLimits = DEFAULT_H2C_POOL_LIMITS,
    private readonly source?: AppDialSource,
  ) {}

  for(appPort: AppPort): H2cAppPool {
    const key = `${appPort.host}:${appPort.port}`;
    let pool = this.pools.get(key);
    if (pool === undefined) {
      pool = new H2cAppPool(appPort, this.limits, this.source);
      this.pools.set(key, pool);
    }
    return pool;
  }

  close(): void {
    for (const pool of this.pools.values()) pool.close();
    this.pools.clear();
  }
}

