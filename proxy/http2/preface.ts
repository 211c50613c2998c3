/**
 * Tells an HTTP/2 client (prior knowledge, h2c) from an HTTP/1.1 one by its first bytes, before either
 * parser sees the connection: an HTTP/2 client must open with the connection preface (RFC 9113 3.4),
 * `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, which no HTTP/1.1 request starts with (`PRI` is not a method
 * anyone uses, and an HTTP/1.1 parser refuses `HTTP/2.0`).
 *
 * The bytes read are put back (`unshift`) and the socket is left paused, so whichever side takes the
 * connection reads them first: node:http2 picks up bytes already buffered when its session starts, the
 * HTTP/1.1 fast path resumes the socket. Deciding costs one read per connection, never per request.
 * A client that sends nothing decisive within `timeoutMs` is closed (the listener passes its keep-alive timeout).
 */
import type { Socket } from 'node:net';

export const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export type ClientProtocol = 'h2' | 'http/1.1';

/** 'h2' when `data` starts with the whole preface, 'http/1.1' when it cannot, undefined while it still may. */
export function prefaceVerdict(data: Buffer): ClientProtocol | undefined {
  const n = Math.min(data.length, HTTP2_PREFACE.length);
  if (data.compare(HTTP2_PREFACE, 0, n, 0, n) !== 0) return 'http/1.1';
  return n === HTTP2_PREFACE.length ? 'h2' : undefined;
}

/** Calls `decided` once with the protocol, the socket paused and every byte read put back; never for a closed socket. */
export function detectClientProtocol(socket: Socket, timeoutMs: number, decided: (protocol: ClientProtocol) => void): void {
  let held: Buffer | undefined;
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  timer.unref();
  const onData = (chunk: Buffer): void => {
    held = held === undefined ? chunk : Buffer.concat([held, chunk]);
    const verdict = prefaceVerdict(held);
    if (verdict === undefined) return;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('close', onClose);
    socket.pause();
    socket.unshift(held);
    decided(verdict);
  };
  const onClose = (): void => clearTimeout(timer);
  socket.on('data', onData);
  socket.once('close', onClose);
}
