/**
 * Coalesces bulk writes to an app socket per event-loop turn, for both the TCP splice and the HTTP lane.
 *
 * The peer's DATA frames (16,393 bytes with their header) straddle TLS records (16,384), so a bulk transfer
 * reaches us as two chunks per record, each in its own callback: two write syscalls per 16 KiB. At a turn's
 * first large chunk the socket is corked until the turn's check phase (setImmediate: node drains
 * process.nextTick after every chunk, so a tick would flush after each one), and the rest of the turn's
 * chunks leave in one writev. Small chunks (request/response exchanges) are written at once. Backpressure
 * is unchanged: corked bytes count towards the socket's high-water mark, so the writer sees `false` and
 * pauses as before. One instance per connection, no allocation per chunk.
 */
import type { Writable } from 'node:stream';

/** A chunk at least this large means a bulk transfer. */
export const COALESCE_MIN_CHUNK_BYTES = 8 * 1024;

export class WriteCoalescer {
  private corked = false;
  private readonly flush = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(private readonly socket: Writable) {}

  /** Call before writing a chunk of `length` bytes to the socket. */
  beforeWrite(length: number): void {
    if (this.corked || length < COALESCE_MIN_CHUNK_BYTES) return;
    this.corked = true;
    this.socket.cork();
    setImmediate(this.flush);
  }
}
