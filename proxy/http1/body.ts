/**
 * Where one HTTP/1.1 message body ends in a byte stream (RFC 9112 6 and 7.1), without copying body bytes.
 *
 * Why: the proxy forwards bodies as the raw bytes it received and must know exactly where the next message
 * begins; a framer that is lenient where the peer is strict (or the reverse) lets one message hide inside
 * another (request smuggling). So chunked encoding is held to the grammar: hex sizes of at most 12 digits,
 * extensions only right after `;` (no whitespace after the size: llhttp refuses it), exactly CRLF after the size line and after chunk data,
 * trailer lines shaped like field lines, no bare CR or LF anywhere, and (for requests) no trailer field that
 * frames, routes or belongs to the mesh (http/header-rules.ts `forbiddenRequestTrailer`): trailers reach the app
 * as sent. The size line and the trailer section are bounded, since neither carries body bytes that could
 * justify their length.
 *
 * Why a state machine over numbers: `consume` runs for every read on the hot path and may be handed a chunked
 * encoding split at any byte; it keeps its place in a few number fields and never allocates or builds strings.
 */
import { COLON, CR, FIELD_VALUE_CHAR, HTAB, LF, SEMICOLON, SP, TOKEN_CHAR } from './bytes.js';
import type { BodyFraming } from './types.js';

/** Decides, by lower-case name, whether a trailer field makes the body unacceptable (request bodies only). */
export type TrailerCheck = (name: string) => boolean;

/** Bytes of a trailer name kept for the check: more than the longest forbidden name (see #trailerRefused). */
const MAX_CHECKED_TRAILER_NAME = 32;

export interface BodyFramerLimits {
  /** Bytes of a chunk-size line incl. extensions, not counting its CRLF, e.g. 4096. */
  readonly maxChunkLineBytes: number;
  /** Bytes of the whole trailer section incl. its CRLFs, e.g. 16384. */
  readonly maxTrailerBytes: number;
}

/** 12 hex digits (2^48 - 1) stay exact in a JS number and far exceed any body we would forward. */
const MAX_CHUNK_SIZE_DIGITS = 12;

const enum State {
  Done,
  Failed,
  Length,
  UntilClose,
  /** Hex digits of a chunk size. */
  Size,
  /** Inside chunk extensions, up to the CR. */
  Extension,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  /** Start of a trailer line, or the CR of the final empty line. */
  TrailerStart,
  TrailerName,
  TrailerValue,
  TrailerLf,
  FinalLf,
}

/** Tracks where one message body ends in a byte stream; never copies or allocates per chunk. Reusable via start(). */
export class BodyFramer {
  readonly #maxChunkLineBytes: number;
  readonly #maxTrailerBytes: number;
  #state: State = State.Done;
  /** Length: body bytes left; Data: chunk bytes left; Size: the size read so far. */
  #remaining = 0;
  /** Size: hex digits read; Size..Extension: bytes of the size line; trailer states: bytes of the trailer section. */
  #lineBytes = 0;
  #digits = 0;
  #consumed = 0;
  #error: string | undefined = undefined;
  readonly #forbiddenTrailer: TrailerCheck | undefined;
  /** The lower-case name of the trailer field being read (its first MAX_CHECKED_TRAILER_NAME bytes), set once. */
  readonly #trailerName: Buffer | undefined;
  #trailerNameLength = 0;

  /** `forbiddenTrailer`: trailer fields a request body may not carry (they would reach the app as sent). */
  constructor(limits: BodyFramerLimits, forbiddenTrailer?: TrailerCheck) {
    this.#maxChunkLineBytes = limits.maxChunkLineBytes;
    this.#maxTrailerBytes = limits.maxTrailerBytes;
    this.#forbiddenTrailer = forbiddenTrailer;
    this.#trailerName = forbiddenTrailer === undefined ? undefined : Buffer.alloc(MAX_CHECKED_TRAILER_NAME);
  }

  start(framing: BodyFraming): void {
    this.#consumed = 0;
    this.#error = undefined;
    this.#remaining = 0;
    this.#lineBytes = 0;
    this.#digits = 0;
    switch (framing.kind) {
      case 'none':
        this.#state = State.Done;
        return;
      case 'length':
        if (!Number.isSafeInteger(framing.length) || framing.length < 0) {
          this.#fail('Content-Length is not a non-negative integer');
          return;
        }
        this.#remaining = framing.length;
        this.#state = framing.length === 0 ? State.Done : State.Length;
        return;
      case 'until-close':
        this.#state = State.UntilClose;
        return;
      case 'chunked':
        this.#state = State.Size;
        return;
    }
  }

  /** The body is complete (true at once for 'none' and 'length' 0; never for 'until-close'). */
  get done(): boolean {
    return this.#state === State.Done;
  }

  /** Set when the chunked encoding is malformed or a limit is exceeded (then `done` stays false). */
  get error(): string | undefined {
    return this.#error;
  }

  /** Body bytes seen so far (for chunked: the encoded bytes consumed). */
  get consumed(): number {
    return this.#consumed;
  }

  /** How many bytes of buf[start, end) belong to the body (0..end-start). When `done` becomes true, the bytes after them are the next message. After an error, returns 0 and `error` says why. */
  consume(buf: Buffer, start: number, end: number): number {
    switch (this.#state) {
      case State.Done:
      case State.Failed:
        return 0;
      case State.UntilClose:
        this.#consumed += end - start;
        return end - start;
      case State.Length: {
        const taken = Math.min(this.#remaining, end - start);
        this.#remaining -= taken;
        this.#consumed += taken;
        if (this.#remaining === 0) this.#state = State.Done;
        return taken;
      }
      default: {
        const stop = this.#chunked(buf, start, end);
        if (stop < 0) return 0;
        this.#consumed += stop - start;
        return stop - start;
      }
    }
  }

  /** Always -1, so that `#chunked` can return it. */
  #fail(reason: string): number {
    this.#state = State.Failed;
    this.#error = reason;
    return -1;
  }

  /** Runs the chunked states over buf[pos, end); returns where it stopped (end, or just after the final LF), or -1 on failure. */
  #chunked(buf: Buffer, pos: number, end: number): number {
    while (pos < end) {
      switch (this.#state) {
        case State.Data: {
          const taken = Math.min(this.#remaining, end - pos);
          pos += taken;
          this.#remaining -= taken;
          if (this.#remaining === 0) this.#state = State.DataCr;
          continue;
        }
        case State.Size:
        case State.Extension: {
          const r = this.#sizeLineByte(buf[pos]!);
          if (r === BYTE_FAILED) return -1;
          if (r === BYTE_UNCOUNTED) {
            pos++;
            continue;
          }
          break;
        }
        case State.SizeLf:
          if (buf[pos] !== LF) return this.#fail('chunk size line not ended by CRLF');
          if (this.#remaining === 0) {
            this.#lineBytes = 0;
            this.#state = State.TrailerStart;
          } else {
            this.#state = State.Data;
          }
          pos++;
          continue;
        case State.DataCr:
          if (buf[pos] !== CR) return this.#fail('chunk data not followed by CRLF');
          this.#state = State.DataLf;
          pos++;
          continue;
        case State.DataLf:
          if (buf[pos] !== LF) return this.#fail('chunk data not followed by CRLF');
          this.#state = State.Size;
          this.#remaining = 0;
          this.#digits = 0;
          this.#lineBytes = 0;
          pos++;
          continue;
        case State.TrailerStart:
        case State.TrailerName:
        case State.TrailerValue:
        case State.TrailerLf:
          if (this.#trailerByte(buf[pos]!) === BYTE_FAILED) return -1;
          break;
        case State.FinalLf:
          if (buf[pos] !== LF) return this.#fail('trailer section not ended by CRLF');
          if (++this.#lineBytes > this.#maxTrailerBytes) return this.#fail(`trailer section exceeds ${this.#maxTrailerBytes} bytes`);
          this.#state = State.Done;
          return pos + 1;
        default:
          return pos;
      }
      // Reached only by the byte-at-a-time states of the size line and the trailer section.
      pos++;
      if (++this.#lineBytes > (this.#state >= State.TrailerStart ? this.#maxTrailerBytes : this.#maxChunkLineBytes)) {
        return this.#fail(this.#state >= State.TrailerStart ? `trailer section exceeds ${this.#maxTrailerBytes} bytes` : `chunk size line exceeds ${this.#maxChunkLineBytes} bytes`);
      }
    }
    return pos;
  }

  /** One byte of a chunk-size line (size digits, then any extension). */
  #sizeLineByte(c: number): number {
    if (this.#state === State.Extension) {
      if (c === CR) {
        this.#state = State.SizeLf;
        return BYTE_UNCOUNTED;
      }
      return FIELD_VALUE_CHAR[c] === 1 ? BYTE_COUNTED : this.#fail('invalid byte in a chunk extension');
    }
    const digit = hexValue(c);
    if (digit >= 0) {
      if (++this.#digits > MAX_CHUNK_SIZE_DIGITS) return this.#fail(`chunk size has more than ${MAX_CHUNK_SIZE_DIGITS} hex digits`);
      this.#remaining = this.#remaining * 16 + digit;
      return BYTE_COUNTED;
    }
    if (c === LF) return this.#fail('chunk size line not ended by CRLF (bare LF)');
    if (this.#digits === 0) return this.#fail('chunk size is not a hex number');
    if (c === CR) {
      this.#state = State.SizeLf;
      return BYTE_UNCOUNTED;
    }
    if (c === SEMICOLON) {
      this.#state = State.Extension;
      return BYTE_COUNTED;
    }
    // RFC 9112 allows BWS before `;`, but llhttp (and so every node app) refuses it: a size line we
    // pass that the app reads otherwise is a framing disagreement, so it is refused here too.
    if (c === SP || c === HTAB) return this.#fail('whitespace after a chunk size');
    return this.#fail('chunk size is not a hex number');
  }

  /** One byte of the trailer section before its final CRLF (each field line: name, `:`, value, CRLF). */
  #trailerByte(c: number): number {
    switch (this.#state) {
      case State.TrailerStart:
        if (c === CR) this.#state = State.FinalLf;
        else if (TOKEN_CHAR[c] === 1) {
          this.#state = State.TrailerName;
          this.#trailerNameLength = 0;
          this.#noteTrailerNameByte(c);
        } else return this.#fail(c === SP || c === HTAB ? 'obs-fold in trailer section' : 'malformed trailer field');
        return BYTE_COUNTED;
      case State.TrailerName:
        if (c === COLON) {
          if (this.#trailerRefused()) return this.#fail('a trailer field that frames, routes or belongs to the mesh');
          this.#state = State.TrailerValue;
        } else if (TOKEN_CHAR[c] !== 1) return this.#fail('malformed trailer field name');
        else this.#noteTrailerNameByte(c);
        return BYTE_COUNTED;
      case State.TrailerValue:
        if (c === CR) this.#state = State.TrailerLf;
        else if (FIELD_VALUE_CHAR[c] !== 1) return this.#fail('invalid byte in a trailer field value');
        return BYTE_COUNTED;
      default:
        // TrailerLf
        if (c !== LF) return this.#fail('trailer field line not ended by CRLF');
        this.#state = State.TrailerStart;
        return BYTE_COUNTED;
    }
  }

  #noteTrailerNameByte(c: number): void {
    const name = this.#trailerName;
    if (name === undefined) return;
    if (this.#trailerNameLength < MAX_CHECKED_TRAILER_NAME) name[this.#trailerNameLength] = c | (c >= 0x41 && c <= 0x5a ? 0x20 : 0);
    this.#trailerNameLength++;
  }

  /**
   * Once per trailer field (a string is made only then, never per chunk). A longer name is judged by its
   * first MAX_CHECKED_TRAILER_NAME bytes: longer than any forbidden name, and enough for the `trellis-` prefix.
   */
  #trailerRefused(): boolean {
    const name = this.#trailerName;
    if (name === undefined) return false;
    return (this.#forbiddenTrailer as TrailerCheck)(name.toString('latin1', 0, Math.min(this.#trailerNameLength, MAX_CHECKED_TRAILER_NAME)));
  }
}

/** What one byte of a size line or trailer section did: counted against the line's bound, or not (a CR), or failed. */
const BYTE_COUNTED = 0;
const BYTE_UNCOUNTED = 1;
const BYTE_FAILED = -1;

/** 0-15 for a hex digit byte, else -1. */
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}
