/**
 * The bytes of a message head that is still arriving, for the lane path's parsers.
 *
 * The head parsers are stateless and start over on every call, so a head fed a byte at a time would be
 * parsed (and, naively, copied) once per byte: quadratic, and a cheap way for a slow client to burn CPU.
 * Pieces are therefore kept as they come and joined only when one could have finished a line (it holds
 * an LF) or the head limit is reached, which bounds the re-parses by the number of lines (and the
 * parser's own field limit bounds those).
 */
const LF = 0x0a;

export class PartialHead {
  private pieces: Buffer[] = [];
  private bytes = 0;

  /** Nothing is waiting. */
  get empty(): boolean {
    return this.bytes === 0;
  }

  /**
   * Adds a chunk. Returns what to parse now: the chunk itself when nothing was waiting, the joined bytes
   * when a line may have ended or `limit` is reached, else undefined (keep waiting).
   */
  push(chunk: Buffer, limit: number): Buffer | undefined {
    if (this.bytes === 0) return chunk;
    this.pieces.push(chunk);
    this.bytes += chunk.length;
    if (chunk.indexOf(LF) < 0 && this.bytes < limit) return undefined;
    return this.take();
  }

  /** Keeps the unparsed tail of a head that was incomplete. */
  hold(rest: Buffer): void {
    this.pieces = [rest];
    this.bytes = rest.length;
  }

  /** Everything waiting, joined (undefined when nothing is); the buffer is empty afterwards. */
  take(): Buffer | undefined {
    if (this.bytes === 0) return undefined;
    const joined = this.pieces.length === 1 ? (this.pieces[0] as Buffer) : Buffer.concat(this.pieces, this.bytes);
    this.pieces = [];
    this.bytes = 0;
    return joined;
  }
}
