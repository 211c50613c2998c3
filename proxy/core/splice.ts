/**
 * Joins an app TCP socket and a tunnel stream (an HTTP/2 CONNECT stream) into one connection, both ways,
 * with the TCP semantics an app expects:
 *
 * - Backpressure: `pipe` pauses the reading side when the writing side's buffer is full and resumes on
 *   'drain'; no chunk is copied or concatenated on the way (Node hands the same Buffer through).
 * - Half-close: a FIN from the app ends our half of the stream (END_STREAM) and vice versa; the other
 *   direction keeps flowing. Both sockets must be created with `allowHalfOpen: true` for this.
 * - Resets: an app reset (ECONNRESET, or any socket error) becomes RST_STREAM(INTERNAL_ERROR), and an
 *   RST_STREAM from the peer becomes a TCP reset to the app (`resetAndDestroy`). A cut (policy change,
 *   shutdown, idle) is RST_STREAM(CANCEL). Neither has END_STREAM before it (stream-reset.ts), so a caller
 *   that has already half-closed sees a reset, not a clean end. RFC 9113 §8.5 suggests CONNECT_ERROR for
 *   an app reset, but node sends a chosen code only after END_STREAM.
 * - Idle connections are closed after `idleTimeoutMs` without a byte either way.
 *
 * `onEnd` runs exactly once, after both sides are closed, with how the connection ended.
 */
import type { Socket } from 'node:net';
import type { Http2Stream } from 'node:http2';
import { RST_NO_ERROR } from './tunnel-protocol.js';
import { cancelStream, failStream } from './stream-reset.js';
import { WriteCoalescer } from './write-coalescer.js';

/** How a spliced connection ended: `ok` for FIN both ways; the others say which side broke it. */
export type SpliceResult = 'ok' | 'app-reset' | 'peer-reset' | 'idle-timeout' | 'cut';

export interface SpliceHandle {
  /** Ends the connection now (policy change, shutdown): resets both sides. */
  cut(): void;
}

export function splice(app: Socket, stream: Http2Stream, idleTimeoutMs: number, onEnd: (result: SpliceResult) => void): SpliceHandle {
  let result: SpliceResult | undefined;
  let open = 2;
  const settle = (): void => {
    open -= 1;
    if (open === 0) onEnd(result ?? 'ok');
  };
  const fail = (why: SpliceResult): void => {
    if (result === undefined) result = why;
  };

  app.on('error', () => {
    fail('app-reset');
    failStream(stream);
  });
  app.once('close', settle);
  if (idleTimeoutMs > 0) {
    app.setTimeout(idleTimeoutMs, () => {
      fail('idle-timeout');
      cancelStream(stream);
      app.destroy();
    });
  }

  // Stream errors surface as 'error' (e.g. the session went away) and always end in 'close'.
  stream.on('error', () => fail('peer-reset'));
  stream.once('close', () => {
    const code = stream.rstCode;
    // Clean only when both directions ended with END_STREAM. A stream destroyed with its session (GOAWAY
    // deadline, peer gone) closes with NO_ERROR but unfinished, and must not leave the app half-connected.
    if ((code !== undefined && code !== RST_NO_ERROR) || !stream.readableEnded || !stream.writableFinished) fail('peer-reset');
    if (result !== undefined && result !== 'ok') {
      if (!app.destroyed) resetApp(app);
    } else if (!app.destroyed && !app.writableEnded) {
      app.end();
    }
    settle();
  });

  // The peer's END_STREAM becomes a FIN to the app one turn later, not at once: node's Http2Stream#close
  // sends END_STREAM just before RST_STREAM, so a reset on the far side arrives as END_STREAM + RST in the
  // same read, and forwarding the FIN first would turn a reset into a clean close.
  // Bulk writes to the app are coalesced per turn (write-coalescer.ts). Added before pipe's listener, so
  // the chunk that corks is itself written corked.
  const coalescer = new WriteCoalescer(app);
  stream.on('data', (chunk: Buffer) => coalescer.beforeWrite(chunk.length));
  stream.pipe(app, { end: false });
  stream.once('end', () => {
    setImmediate(() => {
      const code = stream.rstCode;
      if (result === undefined && (code === undefined || code === RST_NO_ERROR) && !app.destroyed && !app.writableEnded) app.end();
    });
  });
  app.pipe(stream);

  return {
    cut(): void {
      fail('cut');
      cancelStream(stream);
      if (!app.destroyed) resetApp(app);
    },
  };
}

function resetApp(app: Socket): void {
  // resetAndDestroy sends a TCP RST so the app sees the connection broken, not a clean end of data.
  if (typeof app.resetAndDestroy === 'function' && app.readyState !== 'opening') app.resetAndDestroy();
  else app.destroy();
}
