/**
 * The head parser's strings (proxy/http1/head-text.ts): a head decoded once and sliced, or read from the
 * buffer when it is not whole, gives the same fields; constants for common names never change what a
 * name or method is.
 */
import { describe, expect, it } from 'vitest';
import { parseRequestHead, parseResponseHead } from '../../../proxy/http1/head.js';
import type { Http1HeadLimits, RequestHead } from '../../../proxy/http1/types.js';

const LIMITS: Http1HeadLimits = Object.freeze({ maxHeadBytes: 8192, maxHeaderCount: 100 });

const HEAD =
  'PATCH /a/b?c=%C3%A9 HTTP/1.1\r\nHost: api.example:8080\r\nContent-LENGTH: 3\r\nX-Custom-Thing: Mixed Case \xe9\r\n' +
  'Accept-Encoding: gzip, br\r\nX-Long-Value: 0123456789abcdefghijklmnopqrstuvwxyz\r\nConnection: Keep-Alive, X-Custom-Thing\r\n\r\nabc';

function parseWhole(text: string): RequestHead {
  const buf = Buffer.from(text, 'latin1');
  const parsed = parseRequestHead(buf, 0, buf.length, LIMITS);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed));
  return parsed.head;
}

describe('head strings', () => {
  it('gives the same head from a whole head and from one whose end is beyond `end` (read from the buffer)', () => {
    const whole = parseWhole(HEAD);
    expect(whole.method).toBe('PATCH');
    expect(whole.target).toBe('/a/b?c=%C3%A9');
    expect(whole.fields).toEqual([
      { name: 'host', value: 'api.example:8080' },
      { name: 'content-length', value: '3' },
      { name: 'x-custom-thing', value: 'Mixed Case \xe9' },
      { name: 'accept-encoding', value: 'gzip, br' },
      { name: 'x-long-value', value: '0123456789abcdefghijklmnopqrstuvwxyz' },
      { name: 'connection', value: 'Keep-Alive, X-Custom-Thing' },
    ]);
    expect(whole.connectionTokens).toEqual(['keep-alive', 'x-custom-thing']);
    // The same bytes with the head's end cut off by `end`: every line but the last is read from the buffer.
    const buf = Buffer.from(HEAD, 'latin1');
    const headEnd = HEAD.indexOf('\r\n\r\n') + 4;
    expect(parseRequestHead(buf, 0, headEnd - 1, LIMITS)).toEqual({ ok: false, incomplete: true });
    const offset = Buffer.concat([Buffer.from('xxxx'), buf]);
    const shifted = parseRequestHead(offset, 4, offset.length, LIMITS);
    expect(shifted.ok && shifted.head).toEqual(whole);
  });

  it('keeps methods case-sensitive: "get" is not the GET constant', () => {
    expect(parseWhole('get / HTTP/1.1\r\nhost: a\r\n\r\n').method).toBe('get');
    expect(parseWhole('GETX / HTTP/1.1\r\nhost: a\r\n\r\n').method).toBe('GETX');
  });

  it('does not take a name that merely starts like a common one for it', () => {
    const head = parseWhole('GET / HTTP/1.1\r\nHost: a\r\nContent-Lengthx: 5\r\nDATE2: x\r\n\r\n');
    expect(head.fields.map((f) => f.name)).toEqual(['host', 'content-lengthx', 'date2']);
    expect(head.body).toEqual({ kind: 'none' });
  });

  it('refuses a head past the limit the same way when its end is in the buffer', () => {
    const big = `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'v'.repeat(200)}\r\n\r\n`;
    const buf = Buffer.from(big, 'latin1');
    const parsed = parseRequestHead(buf, 0, buf.length, { maxHeadBytes: 100, maxHeaderCount: 10 });
    expect(parsed).toMatchObject({ ok: false, incomplete: false, status: 431 });
  });

  it('reads a response head and its reason phrase from the decoded text', () => {
    const buf = Buffer.from('HTTP/1.1 200 Fine Thanks\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n', 'latin1');
    const parsed = parseResponseHead(buf, 0, buf.length, 'GET', LIMITS);
    expect(parsed.ok && parsed.head.reason).toBe('Fine Thanks');
    expect(parsed.ok && parsed.head.fields).toEqual([
      { name: 'server', value: 'nginx' },
      { name: 'content-type', value: 'text/plain' },
      { name: 'content-length', value: '0' },
    ]);
  });
});
