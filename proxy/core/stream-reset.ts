/**
 * Resets on tunnel streams, both ways, so that a cut exchange is never mistaken for a complete one.
 *
 * Sending: `cancelStream` cancels a stream the way a proxy must when it cuts an exchange half-way:
 * RST_STREAM(CANCEL) and nothing before it.
 *
 * `Http2Stream#close(code)` is not that: node ends the writable side first, so the peer receives
 * END_STREAM, then the RST_STREAM. A peer that had already finished sending (a caller waiting for its
 * response) sees the stream closed cleanly at END_STREAM and ignores the reset, so a response cut by
 * policy would reach the app as complete. Destroying the stream with an AbortError (what `addAbortSignal`
 * does with an aborted signal, a public API) sends RST_STREAM(CANCEL) alone; node documents that the
 * abort "behaves the same way as calling .destroy(new AbortError())".
 */
import { addAbortSignal, type Writable } from 'node:stream';
import { constants as h2, type Http2Stream } from 'node:http2';

const ABORTED = AbortSignal.abort();

/**
 * Streams we reset ourselves. The rapid-reset guard (inbound/tunnel/session-guard.ts) counts only the peer's
 * resets: node reports a reset the same way whichever side sent it (`rstCode`, 'aborted'), and without
 * this mark a caller whose app resets many connections would be cut and its identity penalized for what
 * its destination did.
 */
const RESET_BY_US = new WeakSet<Http2Stream>();

/** True when this side reset (or closed with an error code) the stream. */
export function resetByUs(stream: Http2Stream): boolean {
  return RESET_BY_US.has(stream);
}

/**
 * `stream.close(code)` (END_STREAM first, then RST_STREAM(code)) for the places where that order is
 * wanted or harmless, remembered as our reset when the code is an error.
 */
export function closeStream(stream: Http2Stream, code: number): void {
  if (stream.destroyed) return;
  if (code !== h2.NGHTTP2_NO_ERROR) RESET_BY_US.add(stream);
  stream.close(code);
}

export function cancelStream(stream: Http2Stream): void {
  if (stream.destroyed) return;
  RESET_BY_US.add(stream);
  // The AbortError is emitted as 'error' on our own stream; the reset is the point, not the error.
  stream.on('error', noop);
  addAbortSignal(ABORTED, stream);
}

/** Like `cancelStream`, for a failure (the app reset mid-response): RST_STREAM(INTERNAL_ERROR) alone. */
export function failStream(stream: Http2Stream): void {
  if (stream.destroyed) return;
  RESET_BY_US.add(stream);
  stream.on('error', noop);
  stream.destroy(new Error('stream failed'));
}

/**
 * Receiving: node ends a stream's readable side when the peer resets it (RST_STREAM(CANCEL) gives 'end',
 * not 'error'), so `stream.pipe(dest)` would end `dest` cleanly: a request body cut short would reach the
 * app as a complete chunked body. This pipes without that: `dest` is ended only when the stream ended with
 * END_STREAM; after a reset the caller's 'close' handler breaks `dest` instead.
 */
export function pipeUntilCleanEnd(stream: Http2Stream, dest: Writable): void {
  stream.pipe(dest, { end: false });
  stream.once('end', () => {
    const rst = stream.rstCode;
    if ((rst === undefined || rst === h2.NGHTTP2_NO_ERROR) && !dest.writableEnded && !dest.destroyed) dest.end();
  });
}

function noop(): void {}
