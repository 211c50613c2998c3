/**
 * The lane path's head writing (what an app receives, with the mesh's header rules) and the partial-head
 * buffer that keeps a byte-at-a-time head from being re-parsed per byte.
 */
import { describe, expect, it } from 'vitest';
import { parseRequestHead, parseResponseHead } from '../../../proxy/http1/head.js';
import { failureResponseBytes, forwardRequestHead, responseNeedsCleaning, serializeRequestHead, serializeResponseHead } from '../../../proxy/http1/message.js';
import { PartialHead } from '../../../proxy/http1/partial-head.js';
import { HTTP_FAILURES, HttpFailure } from '../../../proxy/http/errors.js';

const LIMITS = { maxHeadBytes: 16 * 1024, maxHeaderCount: 100 };

function request(text: string) {
  const parsed = parseRequestHead(Buffer.from(text, 'latin1'), 0, text.length, LIMITS);
  if (!parsed.ok) throw new Error(`test head did not parse: ${JSON.stringify(parsed)}`);
  return parsed.head;
}

function response(text: string, method = 'GET') {
  const parsed = parseResponseHead(Buffer.from(text, 'latin1'), 0, text.length, method, LIMITS);
  if (!parsed.ok) throw new Error(`test head did not parse: ${JSON.stringify(parsed)}`);
  return parsed.head;
}

describe('serializeRequestHead', () => {
  it('drops hop-by-hop fields, those Connection names, mesh fields and forged identity, and sets the ids', () => {
    const head = request(
      'POST /pay?x=1 HTTP/1.1\r\nHost: payments\r\nConnection: keep-alive, x-hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\n' +
        'Trellis-Target: admin.kube-system:1\r\nX-Forwarded-Client-Cert: URI=spiffe://evil\r\nX-Request-Id: old\r\n' +
        'Proxy-Connection: keep-alive\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\nX-Custom: kept\r\n\r\n',
    );
    const out = serializeRequestHead(head, '/pay?x=1', 'id-1', 'spiffe://td/ns/shop/sa/orders').toString('latin1');
    expect(out).toBe(
      'POST /pay?x=1 HTTP/1.1\r\nhost: payments\r\nte: trailers\r\ntransfer-encoding: chunked\r\nx-custom: kept\r\n' +
        'x-request-id: id-1\r\nx-forwarded-client-cert: URI=spiffe://td/ns/shop/sa/orders\r\n\r\n',
    );
  });

  it('uses the target it is given (the normalised path) and sets no identity on the outbound side', () => {
    const head = request('GET /a/../b HTTP/1.1\r\nHost: x\r\nTE: gzip\r\n\r\n');
    expect(serializeRequestHead(head, '/b', 'id-2', undefined).toString('latin1')).toBe('GET /b HTTP/1.1\r\nhost: x\r\nx-request-id: id-2\r\n\r\n');
  });
});

describe('forwardRequestHead', () => {
  const forward = (text: string, target: string, id: string, peer: string | undefined): string => {
    const raw = Buffer.from(`junk${text}`, 'latin1');
    const parsed = parseRequestHead(raw, 4, raw.length, LIMITS);
    if (!parsed.ok) throw new Error('did not parse');
    return forwardRequestHead(raw, 4, parsed.length, parsed.head, target, id, peer).toString('latin1');
  };

  it('reuses the received bytes when nothing has to change, adding the ids', () => {
    const text = 'GET /a?b=1 HTTP/1.1\r\nHost: payments\r\nAccept: */*\r\n\r\n';
    expect(forward(text, '/a?b=1', 'id-1', undefined)).toBe('GET /a?b=1 HTTP/1.1\r\nHost: payments\r\nAccept: */*\r\nx-request-id: id-1\r\n\r\n');
    expect(forward(text, '/a?b=1', 'id-1', 'spiffe://td/ns/a/sa/b')).toBe(
      'GET /a?b=1 HTTP/1.1\r\nHost: payments\r\nAccept: */*\r\nx-request-id: id-1\r\nx-forwarded-client-cert: URI=spiffe://td/ns/a/sa/b\r\n\r\n',
    );
  });

  it('keeps a request id that is already the one in use, and adds nothing else for it', () => {
    const text = 'GET / HTTP/1.1\r\nHost: p\r\nX-Request-Id: id-7\r\n\r\n';
    expect(forward(text, '/', 'id-7', 'spiffe://td/ns/a/sa/b')).toBe('GET / HTTP/1.1\r\nHost: p\r\nX-Request-Id: id-7\r\nx-forwarded-client-cert: URI=spiffe://td/ns/a/sa/b\r\n\r\n');
  });

  it('falls back to re-serialising when a field must go, the target changed, or empty lines led the head', () => {
    const hop = 'GET / HTTP/1.1\r\nHost: p\r\nConnection: keep-alive\r\n\r\n';
    expect(forward(hop, '/', 'id', undefined)).toBe(serializeRequestHead(request(hop), '/', 'id', undefined).toString('latin1'));
    const dotted = 'GET /a/../b HTTP/1.1\r\nHost: p\r\n\r\n';
    expect(forward(dotted, '/b', 'id', undefined)).toBe('GET /b HTTP/1.1\r\nhost: p\r\nx-request-id: id\r\n\r\n');
    const forged = 'GET / HTTP/1.1\r\nHost: p\r\nX-Forwarded-Client-Cert: URI=evil\r\n\r\n';
    expect(forward(forged, '/', 'id', 'spiffe://td/ns/a/sa/b')).not.toContain('evil');
    const led = '\r\nGET / HTTP/1.1\r\nHost: p\r\n\r\n';
    expect(forward(led, '/', 'id', undefined)).toBe('GET / HTTP/1.1\r\nhost: p\r\nx-request-id: id\r\n\r\n');
  });
});

describe('serializeResponseHead and responseNeedsCleaning', () => {
  it('leaves an ordinary response alone', () => {
    expect(responseNeedsCleaning(response('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n'))).toBe(false);
  });

  it('removes the app’s trellis-* fields and a Content-Length beside chunked coding', () => {
    const head = response('HTTP/1.1 200 OK\r\nTrellis-Error: FORGED\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n');
    expect(responseNeedsCleaning(head)).toBe(true);
    expect(serializeResponseHead(head, { dropMeshFields: true, close: false }).toString('latin1')).toBe(
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n\r\n',
    );
  });

  it('says Connection: close in place of the kept-alive fields when asked', () => {
    const head = response('HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n');
    expect(serializeResponseHead(head, { dropMeshFields: false, close: true }).toString('latin1')).toBe('HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n');
  });
});

describe('failureResponseBytes', () => {
  it('is a complete response with the stable code, the correlation id and a matching Content-Length', () => {
    const text = failureResponseBytes(new HttpFailure(HTTP_FAILURES.denied, 'no rule'), 'corr-1', true, { 'trellis-denied-by': 'shop/p#0' }).toString('utf8');
    const parsed = parseResponseHead(Buffer.from(text), 0, text.length, 'GET', LIMITS);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    const fields = Object.fromEntries(parsed.head.fields.map((f) => [f.name, f.value]));
    expect(parsed.head.status).toBe(403);
    expect(fields['trellis-error']).toBe('TRELLIS_HTTP_DENIED');
    expect(fields['trellis-correlation-id']).toBe('corr-1');
    expect(fields['trellis-denied-by']).toBe('shop/p#0');
    expect(fields.connection).toBe('close');
    expect(Buffer.byteLength(text) - parsed.length).toBe(Number(fields['content-length']));
  });
});

describe('PartialHead', () => {
  it('passes a chunk straight through when nothing waits', () => {
    const partial = new PartialHead();
    const chunk = Buffer.from('GET / HTTP/1.1\r\n');
    expect(partial.push(chunk, 100)).toBe(chunk);
  });

  it('joins pieces only when one holds an LF or the limit is reached', () => {
    const partial = new PartialHead();
    partial.hold(Buffer.from('GET / HT'));
    expect(partial.push(Buffer.from('TP/1.'), 100)).toBeUndefined();
    expect(partial.push(Buffer.from('1'), 100)).toBeUndefined();
    expect(partial.push(Buffer.from('\r\nHost'), 100)?.toString()).toBe('GET / HTTP/1.1\r\nHost');
    expect(partial.empty).toBe(true);
    partial.hold(Buffer.from('x'.repeat(8)));
    expect(partial.push(Buffer.from('yy'), 10)?.toString()).toBe('xxxxxxxxyy');
  });

  it('parses a head fed one byte at a time once per line, not once per byte', () => {
    const head = `GET / HTTP/1.1\r\nHost: a\r\n${'X-Field: value\r\n'.repeat(50)}\r\n`;
    const partial = new PartialHead();
    let parses = 0;
    let done = false;
    for (let i = 0; i < head.length && !done; i += 1) {
      const data = partial.push(Buffer.from(head[i] as string, 'latin1'), LIMITS.maxHeadBytes);
      if (data === undefined) continue;
      parses += 1;
      const parsed = parseRequestHead(data, 0, data.length, LIMITS);
      if (parsed.ok) done = true;
      else if (parsed.incomplete) partial.hold(data);
      else throw new Error(parsed.reason);
    }
    expect(done).toBe(true);
    // One parse for the first byte, then one per LF (52 lines + the empty one).
    expect(parses).toBeLessThanOrEqual(60);
  });
});
