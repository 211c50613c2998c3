/**
 * Makes sure every inbound tunnel session ends, with its socket, when the HTTP/2 layer or the peer has given
 * up on it, whatever the peer does next.
 *
 * Why this is needed: nghttp2 ends a session on its own for many peer errors (a frame on the wrong stream, an
 * oversized header block, its own rapid-reset limiter): it queues GOAWAY and from then on writes and reads
 * nothing, and node:http2 (20.x) is not told, so the session and its socket stayed open until the idle timeout
 * (which closes gracefully, and so never finished either). Such sessions filled `maxSessions`.
 *
 * - Errors we see (GOAWAY with an error code received, a session-level frame error, a session error, a
 *   refusal or a rapid reset from us) → the session and its socket are destroyed `sessionErrorCloseMs` later
 *   at the latest.
 * - Errors we do not see → every `sessionProbeIntervalMs` each session is sent a PING; one that is still in
 *   nghttp2's outbound queue at the next probe was never written, so the session is wedged and destroyed. A
 *   PING written but not acknowledged within `sessionPingTimeoutMs` cuts the session too (a conforming peer
 *   acknowledges at once; one that never does could otherwise hide a wedge behind its unanswered PING).
 * - Rapid reset (inbound/tunnel/rapid-reset.ts) → GOAWAY(ENHANCE_YOUR_CALM), then destroyed as above.
 * - Once a session is closed, its socket gets `sessionErrorCloseMs` to finish, then is destroyed: node ends
 *   the socket gracefully, which never completes when the peer stops reading.
 */
import { constants as h2, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { ProxyLimits } from '../../core/limits.js';
import { resetByUs } from '../../core/stream-reset.js';
import { RapidResetDetector } from './rapid-reset.js';

export type GuardLimits = Pick<ProxyLimits, 'sessionErrorCloseMs' | 'sessionProbeIntervalMs' | 'sessionPingTimeoutMs' | 'rapidResetMaxResets' | 'rapidResetWindowMs'>;

/** Why a session was ended by its guard: the `reason` of `trellis_tunnel_errors_total`. */
export type GuardReason = 'rapid-reset' | 'peer-goaway-error' | 'frame-error' | 'session-error' | 'session-wedged' | 'ping-timeout';

export interface GuardEvents {
  /** Called once per session, when its guard ends it (not for ends it only finishes). */
  readonly onEnd: (reason: GuardReason, detail: string) => void;
}

/** All guards of one tunnel server, probed by one timer (not one per session). */
export class SessionGuards {
  private readonly guards = new Set<SessionGuard>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly limits: GuardLimits) {}

  get size(): number {
    return this.guards.size;
  }

  /** Starts guarding a session; `socket` is its real TLS socket (the session only exposes a proxy). */
  guard(session: ServerHttp2Session, socket: TLSSocket | undefined, events: GuardEvents): SessionGuard {
    const guard = new SessionGuard(session, socket, this.limits, events, () => this.guards.delete(guard));
    this.guards.add(guard);
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.probeAll(), this.limits.sessionProbeIntervalMs);
      this.timer.unref();
    }
    return guard;
  }

  /** Destroys every session and socket now (the end of a shutdown's grace period). */
  destroyAll(): void {
    for (const guard of [...this.guards]) guard.destroyNow();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  private probeAll(): void {
    const now = Date.now();
    for (const guard of [...this.guards]) guard.probe(now);
    if (this.guards.size === 0) this.stop();
  }
}

export class SessionGuard {
  private readonly resets: RapidResetDetector;
  private ended = false;
  private destroyTimer: NodeJS.Timeout | undefined;
  /** When the outstanding probe PING was sent; undefined when none is outstanding. */
  private probeSentAt: number | undefined;

  constructor(
    private readonly session: ServerHttp2Session,
    private readonly socket: TLSSocket | undefined,
    private readonly limits: GuardLimits,
    private readonly events: GuardEvents,
    private readonly forget: () => void,
  ) {
    this.resets = new RapidResetDetector(limits);
    session.on('goaway', (code: number) => {
      if (code !== h2.NGHTTP2_NO_ERROR) this.end('peer-goaway-error', `the peer sent GOAWAY with error code ${code}`);
    });
    session.on('frameError', (_type: number, code: number, streamId: number) => {
      if (streamId === 0) this.end('frame-error', `a session frame could not be sent (code ${code})`);
    });
    session.on('error', (err: Error) => this.end('session-error', err.message));
    session.once('close', () => this.closed());
  }

  /** Counts a stream for rapid-reset detection; call from the session's 'stream' handler. */
  watchStream(stream: ServerHttp2Stream): void {
    this.resets.streamOpened(Date.now());
    stream.once('close', () => {
      // A stream the peer reset, with any code (a peer may reset with NO_ERROR). Our own resets (an app
      // reset, a policy cut) are marked in stream-reset.ts and never count: the caller did not do them.
      if (stream.rstCode === h2.NGHTTP2_NO_ERROR && !stream.aborted) return;
      if (resetByUs(stream)) return;
      if (this.ended || !this.resets.streamReset(Date.now())) return;
      this.end('rapid-reset', `the peer reset at least ${this.limits.rapidResetMaxResets} streams within ${this.limits.rapidResetWindowMs} ms`, h2.NGHTTP2_ENHANCE_YOUR_CALM);
    });
  }

  /**
   * Ends the session for `reason`: GOAWAY with `code` and destroy now (node stops reading its frames at once),
   * then the socket within `sessionErrorCloseMs`.
   */
  end(reason: GuardReason, detail: string, code: number = h2.NGHTTP2_NO_ERROR): void {
    if (this.ended) return;
    this.ended = true;
    this.events.onEnd(reason, detail);
    this.goawayAndDestroy(code);
  }

  /** Refused at admission (not counted as a guard end): GOAWAY with `code`, then the same bounded close. */
  refuse(code: number): void {
    this.ended = true;
    this.goawayAndDestroy(code);
  }

  destroyNow(): void {
    this.ended = true;
    if (!this.session.destroyed) this.session.destroy();
    this.socket?.destroy();
    this.finish();
  }

  probe(now: number): void {
    if (this.session.destroyed) return;
    if (this.probeSentAt !== undefined) {
      // Still queued: nghttp2 has written nothing since the last probe, so it ended the session by itself.
      if (outboundQueueSize(this.session) > 0) this.end('session-wedged', 'the HTTP/2 layer stopped writing (it ended the session on its own)');
      else if (now - this.probeSentAt >= this.limits.sessionPingTimeoutMs) this.end('ping-timeout', `no PING acknowledgement within ${this.limits.sessionPingTimeoutMs} ms`);
      return;
    }
    try {
      this.session.ping(() => {
        this.probeSentAt = undefined;
      });
      this.probeSentAt = now;
    } catch {
      // Closing or too many PINGs outstanding: the next probe looks again.
    }
  }

  /**
   * GOAWAY with `code` first, then destroy: `destroy(err, code)` would also emit the error on the session
   * (counted as a session error), and `destroy(undefined, code)` sends NO_ERROR (the default argument wins).
   */
  private goawayAndDestroy(code: number): void {
    if (!this.session.destroyed) {
      if (code !== h2.NGHTTP2_NO_ERROR) {
        try {
          this.session.goaway(code);
        } catch {
          // Already closing: the destroy below still ends it.
        }
      }
      this.session.destroy();
    }
    this.armSocketDeadline();
  }

  private closed(): void {
    this.armSocketDeadline();
  }

  private armSocketDeadline(): void {
    if (this.destroyTimer !== undefined) return;
    if (this.socket === undefined || this.socket.destroyed) {
      if (this.session.closed || this.session.destroyed) this.finish();
      return;
    }
    this.destroyTimer = setTimeout(() => {
      if (!this.session.destroyed) this.session.destroy();
      this.socket?.destroy();
      this.finish();
    }, this.limits.sessionErrorCloseMs);
    this.destroyTimer.unref();
    this.socket.once('close', () => this.finish());
  }

  private finish(): void {
    if (this.destroyTimer !== undefined) clearTimeout(this.destroyTimer);
    this.forget();
  }
}

function outboundQueueSize(session: ServerHttp2Session): number {
  try {
    return session.state.outboundQueueSize ?? 0;
  } catch {
    return 0;
  }
}
