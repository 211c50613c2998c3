/**
 * One side of a zone sync stream: lines in (bounded, `frames.ts`), lines out with backpressure. Sending
 * waits while the stream's buffer is over its high-water mark: the sender computes its next delta only
 * when it can be written, so a slow peer gets fewer, larger deltas rather than an unbounded queue.
 */
import type { Duplex } from 'node:stream';
import type { TrellisError} from '../../common/errors.js';
import { describeError, isTrellisError } from '../../common/errors.js';
import { LineReader } from './frames.js';

export interface LineStreamHandlers {
  /** One complete line and its size on the wire; throwing ends the stream with an error message. */
  readonly onLine: (line: string, bytes: number) => void;
  /** The stream ended (by either side), with the error that ended it, if any. */
  readonly onClose: (err: TrellisError | Error | undefined) => void;
}

export class LineStream {
  private closed = false;
  private drainWaiters: (() => void)[] = [];

  constructor(
    private readonly stream: Duplex,
    maxLineBytes: number,
    private readonly handlers: LineStreamHandlers,
  ) {
    const reader = new LineReader(maxLineBytes);
    stream.on('data', (chunk: Buffer) => {
      if (this.closed) return;
      try {
        for (const line of reader.push(chunk)) {
          if (this.closed) return;
          if (line.length > 0) handlers.onLine(line, Buffer.byteLength(line) + 1);
        }
      } catch (err) {
        this.fail(err);
      }
    });
    stream.on('drain', () => {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    });
    stream.on('end', () => this.finish(undefined));
    stream.on('close', () => this.finish(undefined));
    stream.on('error', (err: Error) => this.finish(err));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Whether the stream wants no more writes until it drains. */
  get blocked(): boolean {
    return this.stream.writableNeedDrain;
  }

  /** Runs `then` once the stream has drained (at once when it is not blocked). */
  whenWritable(then: () => void): void {
    if (!this.blocked) then();
    else this.drainWaiters.push(then);
  }

  send(lines: readonly string[]): void {
    if (this.closed) return;
    for (const line of lines) this.stream.write(line);
  }

  /** Sends the error as the last message and ends the stream; the peer reconnects. */
  fail(err: unknown): void {
    if (this.closed) return;
    const code = isTrellisError(err) ? err.code : 'internal';
    const details = isTrellisError(err) ? err.details : undefined;
    this.stream.end(`${JSON.stringify({ t: 'error', code, message: isTrellisError(err) ? err.message : describeError(err), ...(details === undefined ? {} : { details }) })}\n`);
    this.finish(err instanceof Error ? err : new Error(describeError(err)));
  }

  close(): void {
    if (this.closed) return;
    this.stream.end();
    this.finish(undefined);
  }

  private finish(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.drainWaiters = [];
    this.handlers.onClose(err);
    if (!this.stream.destroyed) setTimeout(() => this.stream.destroy(), 1_000).unref();
  }
}
