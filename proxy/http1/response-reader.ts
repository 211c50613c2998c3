/**
 * One HTTP/1.1 response at a time, framed from the bytes it arrives in and written on unchanged: the lane
 * path's response side, the same at both sidecars (the inbound reads its app, the outbound reads a lane).
 *
 * Interim 1xx heads pass through and the next head is read; 101 is refused (lanes carry no upgrades). The
 * final head passes through as received unless `rewrite` returns a replacement (the inbound removes
 * `trellis-*` fields an app sent, the outbound says `Connection: close` when its caller asked). Everything
 * framed in one chunk (heads and body) goes to the sink in one write; the body is never copied. A head still
 * arriving is kept by `PartialHead` and parsed once a line can have ended.
 *
 * After `read`: `error` says the bytes cannot be HTTP/1.1 (the connection they came on is not to be
 * trusted), `done` that the response is complete, and `trailing` that bytes followed it, which the caller
 * never sent a request for (the connection must not be reused).
 */
import { BodyFramer, type BodyFramerLimits } from './body.js';
import { parseResponseHead } from './head.js';
import { PartialHead } from './partial-head.js';
import type { Http1HeadLimits, ResponseHead } from './types.js';

export interface ResponseSink {
  /** Writes bytes towards the caller; false when its buffer is full (the reader's caller applies backpressure). */
  write(part: Buffer): boolean;
}

/** A replacement for a final head that must not go on as received, or undefined to pass it unchanged. */
export type HeadRewrite = (head: ResponseHead) => Buffer | undefined;

export class Http1ResponseReader {
  /** The final head, once read. */
  head: ResponseHead | undefined;
  /** Something (an interim or the final head) was written to the sink. */
  started = false;
  done = false;
  trailing = false;
  error: string | undefined;
  private method = 'GET';
  private rewrite: HeadRewrite | undefined;
  private readonly body: BodyFramer;
  private readonly partial = new PartialHead();

  constructor(
    private readonly sink: ResponseSink,
    private readonly headLimits: Http1HeadLimits,
    bodyLimits: BodyFramerLimits,
  ) {
    this.body = new BodyFramer(bodyLimits);
  }

  /** Expects the response to a request with `method`. */
  begin(method: string, rewrite?: HeadRewrite): void {
    this.method = method;
    this.rewrite = rewrite;
    this.head = undefined;
    this.started = false;
    this.done = false;
    this.trailing = false;
    this.error = undefined;
    this.partial.take();
  }

  /** The body is delimited by the connection's close: `done` when the close is clean. */
  get untilClose(): boolean {
    return this.head?.body.kind === 'until-close';
  }

  /**
   * Frames `chunk` and writes the response bytes in it to the sink. Returns false when the sink's buffer is
   * full while more of the response is to come (pause the source until the sink drains).
   */
  read(chunk: Buffer): boolean {
    if (this.done || this.error !== undefined) {
      this.trailing = this.trailing || chunk.length > 0;
      return true;
    }
    let data = chunk;
    let offset = 0;
    if (this.head === undefined) {
      const joined = this.partial.push(chunk, this.headLimits.maxHeadBytes);
      if (joined === undefined) return true;
      data = joined;
      for (;;) {
        const parsed = parseResponseHead(data, offset, data.length, this.method, this.headLimits);
        if (!parsed.ok) {
          if (parsed.incomplete) {
            if (offset > 0) this.sink.write(data.subarray(0, offset));
            this.partial.hold(data.subarray(offset));
            return true;
          }
          this.error = `malformed response head: ${parsed.reason}`;
          return true;
        }
        const head = parsed.head;
        if (head.status === 101) {
          this.error = '101 Switching Protocols to a request that asked for no upgrade';
          return true;
        }
        this.started = true;
        if (head.status < 200) {
          offset += parsed.length; // an interim 1xx goes on as it is; the final head follows
          continue;
        }
        this.head = head;
        this.body.start(head.body);
        const replacement = this.rewrite?.(head);
        if (replacement !== undefined) {
          if (offset > 0) this.sink.write(data.subarray(0, offset));
          this.sink.write(replacement);
          data = data.subarray(offset + parsed.length);
          offset = 0;
        } else {
          offset += parsed.length;
        }
        break;
      }
    }
    if (offset < data.length) offset += this.body.consume(data, offset, data.length);
    if (this.body.error !== undefined) {
      this.error = `malformed response body: ${this.body.error}`;
      return true;
    }
    this.done = this.body.done;
    this.trailing = this.done && offset < data.length;
    const part = offset === data.length ? data : data.subarray(0, offset);
    const flowing = part.length === 0 || this.sink.write(part);
    return flowing || this.done;
  }
}
