/**
 * Limits of the HTTP/2 server facing a local app (the outbound sidecar's h2c side): the same as the tunnel
 * port's (inbound/tunnel/session-guard.ts), applied per app connection so one connection's trouble stays in it.
 *
 * nghttp2 enforces the frame-level rules itself (header list size via SETTINGS_MAX_HEADER_LIST_SIZE,
 * concurrent streams, its SETTINGS/PING/RST flood limits on queued control frames): on a violation it sends
 * GOAWAY and stops reading. This guard makes sure such a session then ends with its socket, and adds the
 * rapid-reset rule (CVE-2023-44487) with the tunnel's numbers: at least `rapidResetMaxResets` streams reset by
 * the app within `rapidResetWindowMs`, and more than half of those opened → GOAWAY(ENHANCE_YOUR_CALM).
 */
import { constants as h2, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { ProxyLimits } from '../core/limits.js';
import { resetByUs } from '../core/stream-reset.js';

export type AppSessionLimits = Pick<ProxyLimits, 'sessionErrorCloseMs' | 'rapidResetMaxResets' | 'rapidResetWindowMs'>;

/** Why an app's HTTP/2 connection was ended (`trellis_tunnel_errors_total{direction="outbound-app",reason}`). */
export type AppSessionEnd = 'rapid-reset' | 'protocol-error' | 'peer-goaway-error';

export function guardAppSession(session: ServerHttp2Session, socket: Socket, limits: AppSessionLimits, ended: (reason: AppSessionEnd, detail: string) => void): void {
  let windowStart = 0;
  let opened = 0;
  let resets = 0;
  let done = false;
  const roll = (now: number): void => {
    if (now - windowStart < limits.rapidResetWindowMs) return;
    windowStart = now;
    opened = 0;
    resets = 0;
  };
  const end = (reason: AppSessionEnd, detail: string, code: number): void => {
    if (done) return;
    done = true;
    ended(reason, detail);
    if (!session.destroyed && !session.closed) session.goaway(code);
    session.destroy();
    // node ends the socket gracefully, which never completes when the app stops reading.
    setTimeout(() => socket.destroy(), limits.sessionErrorCloseMs).unref();
  };
  // One 'close' listener for every stream of the session (its `this` is the stream), not a closure per stream.
  const streamClosed = function (this: ServerHttp2Stream): void {
    const code = this.rstCode;
    if (code === undefined || code === h2.NGHTTP2_NO_ERROR || resetByUs(this)) return;
    roll(performance.now());
    resets += 1;
    if (resets >= limits.rapidResetMaxResets && resets * 2 > opened) end('rapid-reset', `${resets} streams reset within ${limits.rapidResetWindowMs} ms`, h2.NGHTTP2_ENHANCE_YOUR_CALM);
  };
  session.on('stream', (stream: ServerHttp2Stream) => {
    roll(performance.now());
    opened += 1;
    stream.once('close', streamClosed);
  });
  session.on('error', (err: Error) => end('protocol-error', err.message, h2.NGHTTP2_PROTOCOL_ERROR));
  session.on('frameError', (_type: number, code: number, id: number) => {
    if (id === 0) end('protocol-error', `frame error ${code}`, h2.NGHTTP2_PROTOCOL_ERROR);
  });
  session.on('goaway', (code: number) => {
    if (code !== h2.NGHTTP2_NO_ERROR) end('peer-goaway-error', `GOAWAY ${code}`, h2.NGHTTP2_NO_ERROR);
  });
  // Whatever ended the session (nghttp2 on its own included), the socket follows within the grace.
  session.once('close', () => {
    if (!socket.destroyed) setTimeout(() => socket.destroy(), limits.sessionErrorCloseMs).unref();
  });
}
