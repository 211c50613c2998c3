/**
 * The strings of one message head, made with as few calls into C++ as the bytes allow: the head parser's
 * hot path (http1/head.ts), run twice per request at each sidecar.
 *
 * Why: `buf.toString('latin1', a, b)` and `buf.indexOf(LF, pos)` each cross from JavaScript into C++
 * (~0.1–0.2 µs apiece with their argument checks), and a head made that three times per line: one LF
 * search, one string for the field name, one for the value. When the whole head is in the buffer (the
 * common case: a head arrives in one read), it is decoded once as latin1, and lines, names and values are
 * found in and sliced from that string by V8 builtins, with no further crossing. Common field names (and
 * Connection tokens, and methods) are matched on the bytes and returned as constants, so the usual head
 * allocates no name string and lower-cases nothing. Latin1 maps each byte to one character, so a slice is
 * exactly what `toString('latin1')` of the same range gives. A head that is not whole (still arriving, or
 * longer than the limit) is read from the buffer as before; the parser's checks run on the bytes either way.
 */
import { equalsIgnoreCase } from './bytes.js';

const LF = 0x0a;
/** CRLF CRLF: the end of a head. */
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');

/**
 * Field names (and Connection tokens) common enough to be worth a constant, lower case; by length, so a
 * name is compared with a handful of candidates at most.
 */
const COMMON_NAMES: readonly string[] = [
  'accept',
  'accept-charset',
  'accept-encoding',
  'accept-language',
  'accept-ranges',
  'access-control-allow-origin',
  'age',
  'authorization',
  'cache-control',
  'close',
  'connection',
  'content-encoding',
  'content-language',
  'content-length',
  'content-type',
  'cookie',
  'date',
  'etag',
  'expect',
  'expires',
  'forwarded',
  'host',
  'if-modified-since',
  'if-none-match',
  'keep-alive',
  'last-modified',
  'location',
  'origin',
  'pragma',
  'referer',
  'server',
  'set-cookie',
  'te',
  'traceparent',
  'tracestate',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'user-agent',
  'vary',
  'via',
  'x-forwarded-client-cert',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-request-id',
];
const NAMES_BY_LENGTH: readonly (readonly string[])[] = (() => {
  const table: string[][] = [];
  for (const name of COMMON_NAMES) (table[name.length] ??= []).push(name);
  for (let n = 0; n < table.length; n++) table[n] ??= [];
  return table;
})();

/** Methods are case-sensitive (RFC 9110 9.1): only the exact bytes match. */
const COMMON_METHODS: readonly string[] = ['GET', 'POST', 'PUT', 'HEAD', 'DELETE', 'PATCH', 'OPTIONS'];

function equalsExactly(buf: Buffer, start: number, end: number, word: string): boolean {
  if (end - start !== word.length) return false;
  for (let k = 0; k < word.length; k++) if (buf[start + k] !== word.charCodeAt(k)) return false;
  return true;
}

export class HeadText {
  private static readonly NONE = new HeadText(undefined, 0);

  private constructor(
    /** The head from `base` to its final CRLF CRLF inclusive, or undefined when it was not whole. */
    private readonly text: string | undefined,
    private readonly base: number,
  ) {}

  /** The head starting at `start`, decoded once when it ends (CRLF CRLF) before `end` and within `maxHeadBytes`. */
  static of(buf: Buffer, start: number, end: number, maxHeadBytes: number): HeadText {
    const at = buf.indexOf(HEAD_END, start);
    if (at < 0 || at + 4 > end || at + 4 - start > maxHeadBytes) return HeadText.NONE;
    return new HeadText(buf.toString('latin1', start, at + 4), start);
  }

  /** Where the next LF at or after `pos` is, as `buf.indexOf(LF, pos)` says. */
  indexOfLf(buf: Buffer, pos: number): number {
    const text = this.text;
    if (text !== undefined && pos >= this.base) {
      const at = text.indexOf('\n', pos - this.base);
      if (at >= 0) return at + this.base;
      return buf.indexOf(LF, Math.max(pos, this.base + text.length));
    }
    return buf.indexOf(LF, pos);
  }

  /** The latin1 text of buf[start, end). */
  slice(buf: Buffer, start: number, end: number): string {
    const text = this.text;
    if (text !== undefined && start >= this.base && end <= this.base + text.length) return text.slice(start - this.base, end - this.base);
    return buf.toString('latin1', start, end);
  }

  /** The lower-case latin1 text of buf[start, end) (a field name or token): a constant for common ones. */
  fieldName(buf: Buffer, start: number, end: number): string {
    const length = end - start;
    if (length < NAMES_BY_LENGTH.length) {
      for (const name of NAMES_BY_LENGTH[length] as readonly string[]) if (equalsIgnoreCase(buf, start, end, name)) return name;
    }
    const text = this.slice(buf, start, end);
    for (let i = start; i < end; i++) {
      const c = buf[i]!;
      if (c >= 0x41 && c <= 0x5a) return text.toLowerCase();
    }
    return text;
  }

  /** A method token: a constant for the common ones. */
  method(buf: Buffer, start: number, end: number): string {
    for (const method of COMMON_METHODS) if (equalsExactly(buf, start, end, method)) return method;
    return this.slice(buf, start, end);
  }
}
