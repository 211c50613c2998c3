/**
 * The byte-level vocabulary of HTTP/1.1 (RFC 9112, RFC 9110) shared by the head parser and the body framer.
 *
 * Why a module of its own: both parsers judge the same bytes (CR, LF, tchar, field-vchar) and must agree on them
 * exactly; one set of constants and lookup tables keeps them from drifting apart. Everything here is pure and
 * allocation-free on use: tables are built once at load, and helpers read a buffer range without copying it.
 */

export const CR = 0x0d;
export const LF = 0x0a;
export const SP = 0x20;
export const HTAB = 0x09;
export const COLON = 0x3a;
export const SEMICOLON = 0x3b;
export const COMMA = 0x2c;
export const DQUOTE = 0x22;

function byteTable(accept: (c: number) => boolean): Uint8Array {
  const table = new Uint8Array(256);
  for (let c = 0; c < 256; c++) table[c] = accept(c) ? 1 : 0;
  return table;
}

/** tchar of RFC 9110 5.6.2: 1 where the byte may appear in a token (method, field name, coding). */
export const TOKEN_CHAR: Uint8Array = byteTable(
  (c) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c)),
);

/** field-vchar, SP and HTAB (RFC 9110 5.5): 1 where the byte may appear in a field value or reason phrase. */
export const FIELD_VALUE_CHAR: Uint8Array = byteTable((c) => c === HTAB || (c >= 0x20 && c !== 0x7f));

/** Where the token starting at `start` ends (`start` itself when there is none). */
export function tokenEnd(buf: Buffer, start: number, end: number): number {
  let i = start;
  while (i < end && TOKEN_CHAR[buf[i]!] === 1) i++;
  return i;
}

/** Compares bytes to a lower-case ASCII word, ignoring the case of the bytes. */
export function equalsIgnoreCase(buf: Buffer, start: number, end: number, word: string): boolean {
  if (end - start !== word.length) return false;
  for (let k = 0; k < word.length; k++) {
    if ((buf[start + k]! | 0x20) !== word.charCodeAt(k)) return false;
  }
  return true;
}
