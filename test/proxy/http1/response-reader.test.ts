/**
 * The lane path's response side: heads and body framed from arbitrary chunks, written on in as few writes
 * as the chunks allow, interim responses passed through, the final head re-written only when asked, and
 * bytes after a complete response reported.
 */
import { describe, expect, it } from 'vitest';
import { Http1ResponseReader, type HeadRewrite } from '../../../proxy/http1/response-reader.js';

const HEAD_LIMITS = { maxHeadBytes: 16 * 1024, maxHeaderCount: 100 };
const BODY_LIMITS = { maxChunkLineBytes: 4096, maxTrailerBytes: 16 * 1024 };

function reader(method = 'GET', rewrite?: HeadRewrite): { r: Http1ResponseReader; out: Buffer[] } {
  const out: Buffer[] = [];
  const r = new Http1ResponseReader({ write: (part) => (out.push(part), true) }, HEAD_LIMITS, BODY_LIMITS);
  r.begin(method, rewrite);
  return { r, out };
}

const text = (out: Buffer[]): string => Buffer.concat(out).toString('latin1');

describe('Http1ResponseReader', () => {
  it('writes a small response in one write and ends it at its length', () => {
    const { r, out } = reader();
    r.read(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi'));
    expect(out).toHaveLength(1);
    expect(r.done).toBe(true);
    expect(r.trailing).toBe(false);
    expect(r.head?.status).toBe(200);
  });

  it('frames the same bytes fed one at a time, and passes an interim 103 through', () => {
    const wire = 'HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n';
    const { r, out } = reader();
    for (const c of wire) r.read(Buffer.from(c, 'latin1'));
    expect(text(out)).toBe(wire);
    expect(r.done).toBe(true);
    expect(r.head?.status).toBe(200);
  });

  it('replaces the final head when the rewrite says so, leaving interim heads and the body alone', () => {
    const { r, out } = reader('GET', (head) => (head.status === 200 ? Buffer.from('HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n') : undefined));
    r.read(Buffer.from('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\n\r\nhi'));
    expect(text(out)).toBe('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nhi');
  });

  it('knows HEAD responses and 204s have no body, and reports bytes after a complete response', () => {
    const { r } = reader('HEAD');
    r.read(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 200 OK\r\n'));
    expect(r.done).toBe(true);
    expect(r.trailing).toBe(true);
  });

  it('refuses 101 and broken framing, writing nothing it cannot frame', () => {
    const a = reader();
    a.r.read(Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n'));
    expect(a.r.error).toMatch(/101/);
    expect(a.out).toHaveLength(0);
    const b = reader();
    b.r.read(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n'));
    expect(b.r.error).toMatch(/malformed response head/);
    const c = reader();
    c.r.read(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'));
    expect(c.r.error).toMatch(/malformed response body/);
  });

  it('says a response delimited by the close of the connection is one, and is never done by itself', () => {
    const { r } = reader();
    r.read(Buffer.from('HTTP/1.1 200 OK\r\n\r\nstreaming...'));
    expect(r.untilClose).toBe(true);
    expect(r.done).toBe(false);
  });
});
