/**
 * HTTP/1.1 message heads (RFC 9112, RFC 9110) parsed straight from the bytes of a lane, for the proxy's hot path.
 *
 * Why strict: the proxy carries HTTP/1.1 between sidecars as raw bytes and finds message boundaries itself. Any
 * disagreement between us and the app or a peer about where a message ends is request smuggling, so every
 * ambiguity is refused rather than guessed at: bare CR or LF, obs-fold, whitespace before a colon, control bytes
 * in values, Content-Length with signs, spaces or repeated values (even equal ones), Transfer-Encoding beside Content-Length,
 * `chunked` that is not the final coding or appears twice, Transfer-Encoding in HTTP/1.0, a missing or repeated
 * Host, a Connection that names a framing or routing field (http/header-rules.ts `forbiddenConnectionToken`). The
 * status of a refusal is what the peer should be told (400, 431, 505).
 *
 * Why byte loops: this runs once per message. Bytes are checked against lookup tables; strings are made once
 * per start-line part and field (latin1, sliced from the head decoded once: http1/head-text.ts), and no
 * array is built beyond `fields` and the Connection tokens.
 * Lines still incomplete are checked only for bytes that can never appear in a head (control bytes, a CR that
 * is not last), so garbage is refused before the limit is reached; the rest of a line is judged once it ends.
 */
import { COLON, COMMA, CR, DQUOTE, FIELD_VALUE_CHAR, HTAB, LF, SEMICOLON, SP, equalsIgnoreCase, tokenEnd } from './bytes.js';
import { HeadText } from './head-text.js';
import { forbiddenConnectionToken } from '../http/header-rules.js';
import type { BodyFraming, HeadParse, HeadRefusal, HeaderField, Http1HeadLimits, RequestHead, ResponseHead } from './types.js';

/** RFC 9112 2.2 lets a server skip empty lines before a request line; a few cover real clients, more is abuse. */
const MAX_LEADING_EMPTY_LINES = 4;
/** 15 decimal digits stay below 2^53, so a length is always an exact JS number. */
const MAX_CONTENT_LENGTH_DIGITS = 15;

const INCOMPLETE = Object.freeze({ ok: false, incomplete: true } as const);
const NO_TOKENS: readonly string[] = Object.freeze([]);
const BODY_NONE: BodyFraming = Object.freeze({ kind: 'none' });
const BODY_CHUNKED: BodyFraming = Object.freeze({ kind: 'chunked' });
const BODY_UNTIL_CLOSE: BodyFraming = Object.freeze({ kind: 'until-close' });

function refuse(status: 400 | 431 | 501 | 505, reason: string): HeadRefusal {
  return { ok: false, incomplete: false, status, reason };
}

/**
 * The CR of the CRLF ending the line that starts at `pos`, or what to answer: 400 for a bare LF, 431 when
 * the line ends (or, still open, would end) beyond `maxHeadBytes` from `headStart`, else INCOMPLETE.
 */
function lineEnd(buf: Buffer, pos: number, end: number, headStart: number, limits: Http1HeadLimits, text: HeadText): number | HeadParse<never> {
  const lf = pos < end ? text.indexOfLf(buf, pos) : -1;
  if (lf === -1 || lf >= end) return partialLine(buf, pos, end, headStart, limits);
  if (lf + 1 - headStart > limits.maxHeadBytes) return refuse(431, `head exceeds ${limits.maxHeadBytes} bytes`);
  if (lf === pos || buf[lf - 1] !== CR) return refuse(400, 'bare LF in head');
  return lf - 1;
}

/**
 * What to say about a line that has not ended yet: 431 once the head can no longer fit, 400 for a byte that
 * can never appear in a head, else wait for more.
 */
function partialLine(buf: Buffer, pos: number, end: number, headStart: number, limits: Http1HeadLimits): HeadParse<never> {
  if (end - headStart >= limits.maxHeadBytes) return refuse(431, `head exceeds ${limits.maxHeadBytes} bytes`);
  for (let i = pos; i < end; i++) {
    const c = buf[i]!;
    if (c === CR) {
      if (i !== end - 1) return refuse(400, 'bare CR in head');
    } else if (FIELD_VALUE_CHAR[c] !== 1) return refuse(400, 'control byte in head');
  }
  return INCOMPLETE;
}

/** `HTTP/d.d` at `pos` (8 bytes): the minor version 0 or 1, -505 for another version, -400 for anything else. */
function versionAt(buf: Buffer, pos: number): number {
  if (buf[pos] !== 0x48 || buf[pos + 1] !== 0x54 || buf[pos + 2] !== 0x54 || buf[pos + 3] !== 0x50 || buf[pos + 4] !== 0x2f) return -400;
  const major = buf[pos + 5]! - 0x30;
  const minor = buf[pos + 7]! - 0x30;
  if (major < 0 || major > 9 || buf[pos + 6] !== 0x2e || minor < 0 || minor > 9) return -400;
  if (major !== 1 || minor > 1) return -505;
  return minor;
}

/** What the fields of one head say about framing and the connection, gathered in one pass. */
class FieldScan {
  readonly fields: HeaderField[] = [];
  constructor(readonly text: HeadText) {}
  /** -1: no Content-Length field. */
  contentLength = -1;
  contentLengthError: string | undefined = undefined;
  transferEncoding = false;
  transferEncodingError: string | undefined = undefined;
  chunkedCount = 0;
  finalCodingChunked = false;
  hostCount = 0;
  host: string | undefined = undefined;
  connectionTokens: string[] | undefined = undefined;
  close = false;
  keepAliveToken = false;
  upgradeToken = false;
  upgradeField = false;
  expectContinue = false;
  trailerField = false;
  /** Position after the final CRLF, once the scan succeeded. */
  headEnd = 0;
}

/**
 * Reads field lines from `pos` to the empty line. Returns undefined with `scan.headEnd` set, or what to answer
 * (a refusal or INCOMPLETE).
 */
function scanFields(buf: Buffer, pos: number, end: number, headStart: number, limits: Http1HeadLimits, scan: FieldScan): HeadParse<never> | undefined {
  for (;;) {
    const cr = lineEnd(buf, pos, end, headStart, limits, scan.text);
    if (typeof cr !== 'number') return cr;
    if (cr === pos) {
      scan.headEnd = cr + 2;
      return undefined;
    }
    const first = buf[pos]!;
    if (first === SP || first === HTAB) return refuse(400, 'obs-fold (line folding) is not allowed');
    let i = tokenEnd(buf, pos, cr);
    if (i === pos || i === cr) return refuse(400, 'field line without a name and colon');
    if (buf[i] !== COLON) {
      return refuse(400, buf[i] === SP || buf[i] === HTAB ? 'whitespace between field name and colon' : 'invalid character in field name');
    }
    const nameEnd = i;
    i++;
    while (i < cr && (buf[i] === SP || buf[i] === HTAB)) i++;
    const valueStart = i;
    let valueEnd = i;
    for (; i < cr; i++) {
      const c = buf[i]!;
      if (FIELD_VALUE_CHAR[c] !== 1) return refuse(400, 'invalid character in field value');
      if (c !== SP && c !== HTAB) valueEnd = i + 1;
    }
    if (scan.fields.length >= limits.maxHeaderCount) return refuse(431, `more than ${limits.maxHeaderCount} header fields`);
    const name = scan.text.fieldName(buf, pos, nameEnd);
    const value = valueStart === valueEnd ? '' : scan.text.slice(buf, valueStart, valueEnd);
    scan.fields.push({ name, value });
    const refusal = noteField(buf, name, value, valueStart, valueEnd, scan);
    if (refusal !== undefined) return refusal;
    pos = cr + 2;
  }
}

/** Records what a field means for framing and the connection; a refusal for a field no recipient can trust. */
function noteField(buf: Buffer, name: string, value: string, start: number, end: number, scan: FieldScan): HeadRefusal | undefined {
  switch (name) {
    case 'content-length':
      if (scan.contentLengthError === undefined) scan.contentLengthError = noteContentLength(buf, start, end, scan);
      return undefined;
    case 'transfer-encoding':
      scan.transferEncoding = true;
      if (scan.transferEncodingError === undefined) scan.transferEncodingError = noteCodings(buf, start, end, scan);
      return undefined;
    case 'host':
      scan.hostCount++;
      scan.host = value;
      for (let i = start; i < end; i++) {
        const c = buf[i]!;
        if (c === SP || c === HTAB || c === COMMA) return refuse(400, 'Host is not a single authority');
      }
      return undefined;
    case 'connection':
      return noteConnection(buf, start, end, scan);
    case 'upgrade':
      scan.upgradeField = true;
      return undefined;
    case 'expect':
      if (equalsIgnoreCase(buf, start, end, '100-continue')) scan.expectContinue = true;
      return undefined;
    case 'trailer':
      scan.trailerField = true;
      return undefined;
    default:
      return undefined;
  }
}

/** `1*DIGIT`, once per head (a list or a second field is refused); the error or undefined. */
function noteContentLength(buf: Buffer, start: number, end: number, scan: FieldScan): string | undefined {
  let i = start;
  for (;;) {
    while (i < end && (buf[i] === SP || buf[i] === HTAB)) i++;
    const digitsStart = i;
    let length = 0;
    while (i < end) {
      const d = buf[i]! - 0x30;
      if (d < 0 || d > 9) break;
      length = length * 10 + d;
      i++;
    }
    const digits = i - digitsStart;
    if (digits === 0) return 'Content-Length is not a decimal number';
    if (digits > MAX_CONTENT_LENGTH_DIGITS) return `Content-Length has more than ${MAX_CONTENT_LENGTH_DIGITS} digits`;
    // Even equal copies are refused: a recipient that takes the list as one invalid value (as llhttp does
    // for "5, 5") would frame the message differently, and we never forward a value as received that way.
    if (scan.contentLength !== -1) return scan.contentLength === length ? 'repeated Content-Length' : 'conflicting Content-Length values';
    scan.contentLength = length;
    while (i < end && (buf[i] === SP || buf[i] === HTAB)) i++;
    if (i === end) return undefined;
    if (buf[i] !== COMMA) return 'Content-Length is not a decimal number';
    i++;
  }
}

const CHUNKED = 'chunked';

/** Transfer codings in order: counts `chunked` and whether it is final; the error or undefined. */
function noteCodings(buf: Buffer, start: number, end: number, scan: FieldScan): string | undefined {
  let i = start;
  for (;;) {
    while (i < end && (buf[i] === SP || buf[i] === HTAB)) i++;
    const codingStart = i;
    i = tokenEnd(buf, i, end);
    if (i === codingStart) return 'Transfer-Encoding has an empty or invalid coding';
    const chunked = equalsIgnoreCase(buf, codingStart, i, CHUNKED);
    if (chunked) scan.chunkedCount++;
    scan.finalCodingChunked = chunked;
    while (i < end && (buf[i] === SP || buf[i] === HTAB)) i++;
    if (i < end && buf[i] === SEMICOLON) {
      if (chunked) return 'chunked takes no parameters';
      // Parameters of other codings are passed on untouched; a quoted comma could hide a coding, so no quotes.
      while (i < end && buf[i] !== COMMA) {
        if (buf[i] === DQUOTE) return 'quoted Transfer-Encoding parameters are not accepted';
        i++;
      }
    }
    if (i === end) return undefined;
    if (buf[i] !== COMMA) return 'Transfer-Encoding has an invalid coding';
    i++;
  }
}

/** Connection tokens (empty list elements skipped, as RFC 9110 5.6.1 asks). */
function noteConnection(buf: Buffer, start: number, end: number, scan: FieldScan): HeadRefusal | undefined {
  let i = start;
  while (i < end) {
    while (i < end && (buf[i] === SP || buf[i] === HTAB || buf[i] === COMMA)) i++;
    if (i === end) break;
    const tokenStart = i;
    i = tokenEnd(buf, i, end);
    if (i === tokenStart) return refuse(400, 'Connection holds a non-token');
    const token = scan.text.fieldName(buf, tokenStart, i);
    (scan.connectionTokens ??= []).push(token);
    if (token === 'close') scan.close = true;
    else if (token === 'keep-alive') scan.keepAliveToken = true;
    else if (token === 'upgrade') scan.upgradeToken = true;
    while (i < end && (buf[i] === SP || buf[i] === HTAB)) i++;
    if (i < end && buf[i] !== COMMA) return refuse(400, 'Connection holds a non-token');
  }
  return undefined;
}

function keepAlive(minorVersion: 0 | 1, scan: FieldScan): boolean {
  if (scan.close) return false;
  return minorVersion === 1 || scan.keepAliveToken;
}

/** RFC 9112 6.1-6.3 for requests: chunked final and once, never beside Content-Length, never in HTTP/1.0. */
function requestFraming(minorVersion: 0 | 1, scan: FieldScan): BodyFraming | HeadRefusal {
  if (scan.transferEncoding) {
    if (minorVersion === 0) return refuse(400, 'Transfer-Encoding in an HTTP/1.0 request');
    if (scan.contentLength !== -1 || scan.contentLengthError !== undefined) return refuse(400, 'both Transfer-Encoding and Content-Length');
    if (scan.transferEncodingError !== undefined) return refuse(400, scan.transferEncodingError);
    if (scan.chunkedCount > 1) return refuse(400, 'chunked applied more than once');
    if (!scan.finalCodingChunked) return refuse(400, 'final transfer coding is not chunked');
    return BODY_CHUNKED;
  }
  if (scan.contentLengthError !== undefined) return refuse(400, scan.contentLengthError);
  if (scan.contentLength !== -1) return { kind: 'length', length: scan.contentLength };
  return BODY_NONE;
}

/** RFC 9112 6.3 for responses; `bodyless` covers HEAD, 1xx, 204 and 304, `tunnel` a 2xx to CONNECT. */
function responseFraming(minorVersion: 0 | 1, scan: FieldScan, bodyless: boolean, tunnel: boolean): BodyFraming | HeadRefusal {
  if (bodyless) return BODY_NONE;
  if (tunnel) return BODY_UNTIL_CLOSE;
  if (scan.transferEncoding) {
    // RFC 9112 6.1: HTTP/1.0 framing with Transfer-Encoding is faulty; guessing either way risks desync.
    if (minorVersion === 0) return refuse(400, 'Transfer-Encoding in an HTTP/1.0 response');
    if (scan.transferEncodingError !== undefined) return refuse(400, scan.transferEncodingError);
    if (scan.chunkedCount > 1) return refuse(400, 'chunked applied more than once');
    // Content-Length is ignored beside Transfer-Encoding (RFC 9112 6.3 item 3); the forwarder must drop it.
    return scan.finalCodingChunked ? BODY_CHUNKED : BODY_UNTIL_CLOSE;
  }
  if (scan.contentLengthError !== undefined) return refuse(400, scan.contentLengthError);
  if (scan.contentLength !== -1) return { kind: 'length', length: scan.contentLength };
  return BODY_UNTIL_CLOSE;
}

function isRefusal(value: BodyFraming | HeadRefusal): value is HeadRefusal {
  return (value as { ok?: boolean }).ok === false;
}

export function parseRequestHead(buf: Buffer, start: number, end: number, limits: Http1HeadLimits): HeadParse<RequestHead> {
  let pos = start;
  for (let skipped = 0; skipped < MAX_LEADING_EMPTY_LINES && pos < end; skipped++) {
    const c = buf[pos];
    if (c === LF) return refuse(400, 'bare LF in head');
    if (c !== CR) break;
    if (pos + 1 === end) return INCOMPLETE;
    if (buf[pos + 1] !== LF) return refuse(400, 'bare CR in head');
    pos += 2;
  }
  const headStart = pos;
  const text = HeadText.of(buf, headStart, end, limits.maxHeadBytes);
  const cr = lineEnd(buf, pos, end, headStart, limits, text);
  if (typeof cr !== 'number') return cr;

  let i = tokenEnd(buf, pos, cr);
  if (i === pos || i === cr || buf[i] !== SP) return refuse(400, 'malformed request line: method');
  const method = text.method(buf, pos, i);
  const targetStart = ++i;
  for (; i < cr; i++) {
    const c = buf[i]!;
    if (c === SP) break;
    if (c < 0x21 || c > 0x7e) return refuse(400, 'malformed request line: invalid character in target');
  }
  if (i === targetStart || i === cr) return refuse(400, 'malformed request line: target');
  const target = text.slice(buf, targetStart, i);
  i++;
  if (cr - i !== 8) return refuse(400, 'malformed request line: version');
  const version = versionAt(buf, i);
  if (version === -505) return refuse(505, 'HTTP version not supported');
  if (version < 0) return refuse(400, 'malformed request line: version');
  const minorVersion = version as 0 | 1;

  const scan = new FieldScan(text);
  const fieldsRefusal = scanFields(buf, cr + 2, end, headStart, limits, scan);
  if (fieldsRefusal !== undefined) return fieldsRefusal;
  if (scan.hostCount > 1) return refuse(400, 'more than one Host field');
  if (scan.hostCount === 0 && minorVersion === 1) return refuse(400, 'HTTP/1.1 request without Host');
  const named = scan.connectionTokens === undefined ? undefined : forbiddenConnectionToken(scan.connectionTokens, false);
  if (named !== undefined) return refuse(400, `Connection names ${named}, which frames or routes the request`);
  const body = requestFraming(minorVersion, scan);
  if (isRefusal(body)) return body;
  return {
    ok: true,
    length: scan.headEnd - start,
    head: {
      method,
      target,
      minorVersion,
      fields: scan.fields,
      host: scan.host,
      body,
      keepAlive: keepAlive(minorVersion, scan),
      upgrade: method === 'CONNECT' || (scan.upgradeField && scan.upgradeToken),
      expectContinue: scan.expectContinue,
      hasTrailerField: scan.trailerField,
      connectionTokens: scan.connectionTokens ?? NO_TOKENS,
    },
  };
}

/** `requestMethod` decides HEAD/CONNECT framing; a 1xx response is returned as a head with body 'none' (the caller then parses the next head). */
export function parseResponseHead(buf: Buffer, start: number, end: number, requestMethod: string, limits: Http1HeadLimits): HeadParse<ResponseHead> {
  const text = HeadText.of(buf, start, end, limits.maxHeadBytes);
  const cr = lineEnd(buf, start, end, start, limits, text);
  if (typeof cr !== 'number') return cr;
  // "HTTP/1.1 200" is the shortest status line: the SP before an empty reason may be missing.
  if (cr - start < 12) return refuse(400, 'malformed status line');
  const version = versionAt(buf, start);
  if (version === -505) return refuse(505, 'HTTP version not supported');
  if (version < 0 || buf[start + 8] !== SP) return refuse(400, 'malformed status line: version');
  const minorVersion = version as 0 | 1;
  let status = 0;
  for (let i = start + 9; i < start + 12; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) return refuse(400, 'malformed status line: status code');
    status = status * 10 + d;
  }
  if (status < 100) return refuse(400, 'status code below 100');
  let reason = '';
  if (cr > start + 12) {
    if (buf[start + 12] !== SP) return refuse(400, 'malformed status line: status code');
    for (let i = start + 13; i < cr; i++) {
      if (FIELD_VALUE_CHAR[buf[i]!] !== 1) return refuse(400, 'malformed status line: invalid character in reason');
    }
    reason = text.slice(buf, start + 13, cr);
  }

  const scan = new FieldScan(text);
  const fieldsRefusal = scanFields(buf, cr + 2, end, start, limits, scan);
  if (fieldsRefusal !== undefined) return fieldsRefusal;
  const named = scan.connectionTokens === undefined ? undefined : forbiddenConnectionToken(scan.connectionTokens, true);
  if (named !== undefined) return refuse(400, `Connection names ${named}, which frames the response`);
  const bodyless = requestMethod === 'HEAD' || status < 200 || status === 204 || status === 304;
  const tunnel = requestMethod === 'CONNECT' && status >= 200 && status < 300;
  const body = responseFraming(minorVersion, scan, bodyless, tunnel);
  if (isRefusal(body)) return body;
  return {
    ok: true,
    length: scan.headEnd - start,
    head: {
      status,
      reason,
      minorVersion,
      fields: scan.fields,
      body,
      keepAlive: body.kind !== 'until-close' && keepAlive(minorVersion, scan),
      connectionTokens: scan.connectionTokens ?? NO_TOKENS,
    },
  };
}
