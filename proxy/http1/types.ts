/**
 * The shapes of parsed HTTP/1.1 heads (http1/head.ts) and of body framing (http1/body.ts), shared by the
 * lane path on both sides.
 */
/** Limits of one head; `maxHeadBytes` counts from the start line (leading empty lines are bounded apart). */
export interface Http1HeadLimits {
  /** Bytes of the whole head (start line + fields + final CRLF CRLF). Beyond it: 431. */
  readonly maxHeadBytes: number;
  /** Header fields in one head. Beyond it: 431. */
  readonly maxHeaderCount: number;
}

export interface HeaderField {
  /** Lower-case. */
  readonly name: string;
  /** Leading and trailing OWS trimmed. */
  readonly value: string;
}

export type BodyFraming =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly length: number }
  | { readonly kind: 'chunked' }
  | { readonly kind: 'until-close' }; // responses only

export interface RequestHead {
  readonly method: string;
  readonly target: string;
  readonly minorVersion: 0 | 1;
  /** In received order. */
  readonly fields: readonly HeaderField[];
  readonly host: string | undefined;
  /** Never 'until-close' for requests. */
  readonly body: BodyFraming;
  /** HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`. */
  readonly keepAlive: boolean;
  /** An `Upgrade` field with `upgrade` among the Connection tokens, or method CONNECT. */
  readonly upgrade: boolean;
  /** `Expect: 100-continue` (case-insensitive). */
  readonly expectContinue: boolean;
  /** A `Trailer` field is present. */
  readonly hasTrailerField: boolean;
  /** Lower-case tokens of all Connection fields. */
  readonly connectionTokens: readonly string[];
}

export interface ResponseHead {
  readonly status: number;
  readonly reason: string;
  readonly minorVersion: 0 | 1;
  readonly fields: readonly HeaderField[];
  readonly body: BodyFraming;
  /** False whenever body is 'until-close'. */
  readonly keepAlive: boolean;
  readonly connectionTokens: readonly string[];
}

export type HeadParse<T> =
  /** length: bytes of the head incl. the final CRLF CRLF (and any leading empty lines skipped). */
  | { readonly ok: true; readonly head: T; readonly length: number }
  /** Need more bytes; the bytes so far are within maxHeadBytes and not already invalid. */
  | { readonly ok: false; readonly incomplete: true }
  | { readonly ok: false; readonly incomplete: false; readonly status: 400 | 431 | 501 | 505; readonly reason: string };

export type HeadRefusal = { readonly ok: false; readonly incomplete: false; readonly status: 400 | 431 | 501 | 505; readonly reason: string };
