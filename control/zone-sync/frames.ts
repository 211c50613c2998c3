/**
 * Newline-delimited JSON over a byte stream, bounded: a line longer than `maxLineBytes` is refused before
 * it is buffered whole (TRELLIS_ZONE_SYNC_TOO_LARGE), so a peer cannot make us hold an endless message.
 */
import { TrellisError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';

const NEWLINE = 0x0a;

export class LineReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly maxLineBytes: number) {}

  /** The complete lines in `chunk` (with what was pending before it); throws on an oversized line. */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let i = chunk.indexOf(NEWLINE); i >= 0; i = chunk.indexOf(NEWLINE, start)) {
      const piece = chunk.subarray(start, i);
      this.check(piece.length);
      lines.push(this.pending.length === 0 ? piece.toString('utf8') : Buffer.concat([...this.pending, piece]).toString('utf8'));
      this.pending = [];
      this.pendingBytes = 0;
      start = i + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.check(rest.length);
      this.pending.push(rest);
      this.pendingBytes += rest.length;
    }
    return lines;
  }

  private check(more: number): void {
    if (this.pendingBytes + more > this.maxLineBytes) {
      throw new TrellisError(CODE.ZONE_SYNC_TOO_LARGE, `zone sync: a message is over the ${this.maxLineBytes}-byte limit (a sender chunks its deltas below it)`, { side: 'downstream', details: { limit: this.maxLineBytes } });
    }
  }
}
