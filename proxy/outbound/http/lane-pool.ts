/**
 * Lanes: kept-alive HTTP/1.1 connections between two sidecars, each one a CONNECT stream (marked
 * `trellis-lane: http/1.1`) on a pooled mTLS tunnel session. The outbound side keeps idle lanes per
 * destination endpoint and lends one to each request, so a request costs a write on an open stream
 * instead of a new HTTP/2 stream: measured on this machine, Node 20's HTTP/2 client spends more per
 * `request()` than the whole lane path does per request (docs/architecture.md, "HTTP lanes").
 *
 * Load balancing stays per request: the balancer picks the endpoint first, then a lane to it is taken or
 * opened. A lane is reused only while its session is current (`SessionPool.isCurrent`), so GOAWAY and
 * certificate rotation drain lanes like any other stream. Idle lanes are bounded per endpoint and closed
 * by a sweep once idle for `idleTimeoutMs`; the inbound side reconnects to its app on demand, so a lane
 * outlives the app's own keep-alive timeout. No timer is touched per request.
 */
import type { ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import { TrellisError } from '../../../common/errors.js';
import type { PoolTarget, SessionPool } from '../tunnel-client/session-pool.js';
import { LANE_HEADER, LANE_HTTP1, RST_CANCEL, STATUS_OK } from '../../core/tunnel-protocol.js';
import { CODE } from '../../../common/error-codes.js';
import { LANE_DEFAULTS } from '../../core/limits.js';

export interface LanePoolLimits {
  /** Idle lanes kept per destination endpoint; more are closed when returned. */
  readonly maxIdlePerEndpoint: number;
  /** An idle lane is closed after this. */
  readonly idleTimeoutMs: number;
  /** A new lane must be accepted (200) within this. */
  readonly openTimeoutMs: number;
}

export const DEFAULT_LANE_POOL_LIMITS: LanePoolLimits = Object.freeze({ maxIdlePerEndpoint: LANE_DEFAULTS.poolMaxIdlePerEndpoint, idleTimeoutMs: LANE_DEFAULTS.poolIdleTimeoutMs, openTimeoutMs: LANE_DEFAULTS.poolOpenTimeoutMs });

/** One lane. Its owner (the app connection using it now) receives its bytes; idle lanes have none. */
export class Lane {
  owner: LaneOwner | undefined;
  /** When it last went idle (performance.now()), for the idle sweep. */
  idleSince = 0;
  /** Closed by its idle timer (set per use by the owner: the upstream idle timeout). */
  timedOut = false;
  /** Its in-use timer is a destination's own idle timeout (a TimeoutPolicy's `idle`) until it goes back to the pool. */
  idleOverride = false;
  constructor(
    readonly key: string,
    readonly stream: ClientHttp2Stream,
  ) {}
}

/** What a lane reports to the app connection that holds it. */
export interface LaneOwner {
  onLaneData(chunk: Buffer): void;
  /** The lane ended or failed; `rstCode` is its RST_STREAM code (0: a clean end). */
  onLaneClosed(rstCode: number): void;
}

export class LanePool {
  private readonly idle = new Map<string, Lane[]>();
  private closed = false;
  private openLanes = 0;
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly sessions: Pick<SessionPool, 'openStream' | 'tryOpenStream' | 'isCurrent'>,
    private readonly limits: LanePoolLimits = DEFAULT_LANE_POOL_LIMITS,
    /** A lane silent this long while in use is closed (the request fails 504): the upstream idle timeout. */
    private readonly inUseTimeoutMs = 300_000,
  ) {
    // One timer for all idle lanes instead of re-arming a timer on every request.
    this.sweeper = setInterval(() => this.closeIdle(performance.now()), Math.max(1_000, Math.floor(limits.idleTimeoutMs / 3)));
    this.sweeper.unref();
  }

  /** The most recently used idle lane to `key` that may still be used, or undefined. */
  take(key: string): Lane | undefined {
    const list = this.idle.get(key);
    if (list === undefined) return undefined;
    for (let lane = list.pop(); lane !== undefined; lane = list.pop()) {
      if (this.sessions.isCurrent(lane.stream)) return lane;
      lane.stream.close(RST_CANCEL);
    }
    return undefined;
  }

  /**
   * Opens a lane to the target. Rejects with a retryable error when no session or stream could be had or
   * the peer did not accept the lane: nothing was sent, so another endpoint may be tried.
   */
  open(key: string, target: PoolTarget, authority: string): Promise<Lane> {
    const headers = { ':method': 'CONNECT', ':authority': authority, [LANE_HEADER]: LANE_HTTP1 };
    let stream: ClientHttp2Stream | undefined;
    try {
      stream = this.sessions.tryOpenStream(target, headers);
    } catch (err) {
      return Promise.reject(retryable(key, (err as Error).message));
    }
    const opened = stream !== undefined ? Promise.resolve(stream) : this.sessions.openStream(target, headers);
    return opened.then((s) => this.accepted(key, s));
  }

  /**
   * The destination's TimeoutPolicy sets its own idle timeout: the lane's timer follows it for this use.
   * Only then is a timer touched per request; the pool's own timeout comes back when the lane is given back.
   */
  setIdleTimeout(lane: Lane, ms: number): void {
    if (ms === this.inUseTimeoutMs && !lane.idleOverride) return;
    lane.idleOverride = ms !== this.inUseTimeoutMs;
    lane.stream.setTimeout(ms);
  }

  /** A lane whose last exchange ended cleanly goes back to the idle list (or is closed beyond the bound). */
  give(lane: Lane): void {
    lane.owner = undefined;
    if (lane.idleOverride) {
      lane.idleOverride = false;
      lane.stream.setTimeout(this.inUseTimeoutMs);
    }
    if (this.closed || !this.sessions.isCurrent(lane.stream)) {
      lane.stream.close(RST_CANCEL);
      return;
    }
    let list = this.idle.get(lane.key);
    if (list === undefined) {
      list = [];
      this.idle.set(lane.key, list);
    }
    if (list.length >= this.limits.maxIdlePerEndpoint) {
      lane.stream.close(RST_CANCEL);
      return;
    }
    lane.idleSince = performance.now();
    list.push(lane);
  }

  /** Lanes open now, idle or in use (the `trellis_http_lanes` gauge). */
  openCount(): number {
    return this.openLanes;
  }

  /** Lanes idle now, over all endpoints (for tests and the `trellis_http_lanes` gauge). */
  idleCount(): number {
    let n = 0;
    for (const list of this.idle.values()) n += list.length;
    return n;
  }

  /** Closes idle lanes now and refuses to keep any more; lanes in use end with their exchange. */
  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const list of this.idle.values()) for (const lane of list) lane.stream.close(RST_CANCEL);
    this.idle.clear();
  }

  private accepted(key: string, stream: ClientHttp2Stream): Promise<Lane> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        stream.close(RST_CANCEL);
        reject(retryable(key, `the lane was not accepted within ${this.limits.openTimeoutMs} ms`));
      }, this.limits.openTimeoutMs);
      const onClose = (): void => {
        clearTimeout(timer);
        reject(retryable(key, `the lane was reset before it was accepted (RST_STREAM ${stream.rstCode ?? 0})`));
      };
      stream.on('error', noop);
      stream.once('close', onClose);
      stream.once('response', (headers: IncomingHttpHeaders) => {
        clearTimeout(timer);
        stream.removeListener('close', onClose);
        const status = Number(headers[':status']);
        if (status !== STATUS_OK) {
          stream.close(RST_CANCEL);
          reject(retryable(key, `the peer refused the lane with ${status}`));
          return;
        }
        resolve(this.wire(new Lane(key, stream)));
      });
    });
  }

  /** One set of listeners per lane for its whole life; they forward to whoever holds it now. */
  private wire(lane: Lane): Lane {
    const { stream } = lane;
    // Set once: inactivity while in use fails the request; idle lanes are closed by the sweep long before.
    stream.setTimeout(this.inUseTimeoutMs);
    this.openLanes += 1;
    stream.on('data', (chunk: Buffer) => {
      if (lane.owner !== undefined) lane.owner.onLaneData(chunk);
      else stream.close(RST_CANCEL); // bytes on an idle lane: the peer broke the framing
    });
    stream.once('close', () => {
      this.openLanes -= 1;
      const owner = lane.owner;
      lane.owner = undefined;
      this.forget(lane);
      owner?.onLaneClosed(stream.rstCode ?? 0);
    });
    stream.once('end', () => {
      // The peer ended its side: no more responses can come on this lane.
      const owner = lane.owner;
      lane.owner = undefined;
      this.forget(lane);
      // node ends the readable side on RST_STREAM(CANCEL) too: only END_STREAM (no code) is a clean end.
      const rstCode = stream.rstCode ?? 0;
      if (!stream.closed) stream.close(RST_CANCEL);
      owner?.onLaneClosed(rstCode);
    });
    stream.on('timeout', () => {
      lane.timedOut = lane.owner !== undefined;
      stream.close(RST_CANCEL);
    });
    return lane;
  }

  /**
   * Closes lanes idle for the idle timeout as of `now` (a performance.now() time; the pool's own timer
   * calls it). Each list is oldest first: lanes are pushed as they go idle.
   */
  closeIdle(now: number): void {
    const cutoff = now - this.limits.idleTimeoutMs;
    for (const [key, list] of this.idle) {
      let stale = 0;
      while (stale < list.length && (list[stale] as Lane).idleSince <= cutoff) stale += 1;
      if (stale === 0) continue;
      for (const lane of list.splice(0, stale)) lane.stream.close(RST_CANCEL);
      if (list.length === 0) this.idle.delete(key);
    }
  }

  private forget(lane: Lane): void {
    const list = this.idle.get(lane.key);
    if (list === undefined) return;
    const i = list.indexOf(lane);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.idle.delete(lane.key);
  }
}

function retryable(key: string, why: string): TrellisError {
  return new TrellisError(CODE.HTTP_LANE_UNAVAILABLE, `no HTTP lane to ${key}: ${why}`, { side: 'upstream', retryable: true });
}

function noop(): void {}
