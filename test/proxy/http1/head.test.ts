/**
 * HTTP/1.1 head parsing (proxy/http1/head.ts): what a valid head yields, and that every ambiguity a
 * smuggling attack relies on is refused with the status the peer should see.
 */
import { describe, expect, it } from 'vitest';
import { parseRequestHead, parseResponseHead } from '../../../proxy/http1/head.js';
import type { HeadParse, Http1HeadLimits, RequestHead, ResponseHead } from '../../../proxy/http1/types.js';

const LIMITS: Http1HeadLimits = Object.freeze({ maxHeadBytes: 8192, maxHeaderCount: 100 });

function request(text: string, limits: Http1HeadLimits = LIMITS): HeadParse<RequestHead> {
  const buf = Buffer.from(text, 'latin1');
  return parseRequestHead(buf, 0, buf.length, limits);
}

function response(text: string, method = 'GET', limits: Http1HeadLimits = LIMITS): HeadParse<ResponseHead> {
  const buf = Buffer.from(text, 'latin1');
  return parseResponseHead(buf, 0, buf.length, method, limits);
}

function okRequest(text: string): RequestHead {
  const parsed = request(text);
  if (!parsed.ok) throw new Error(`expected a head, got ${JSON.stringify(parsed)}`);
  expect(parsed.length).toBe(Buffer.byteLength(text, 'latin1'));
  return parsed.head;
}

function okResponse(text: string, method = 'GET'): ResponseHead {
  const parsed = response(text, method);
  if (!parsed.ok) throw new Error(`expected a head, got ${JSON.stringify(parsed)}`);
  expect(parsed.length).toBe(Buffer.byteLength(text, 'latin1'));
  return parsed.head;
}

const GET = 'GET /a?b=1 HTTP/1.1\r\nHost: svc.shop\r\n';

describe('parseRequestHead: valid heads', () => {
  it('reads the start line, fields in order, host and defaults', () => {
    const head = okRequest('GET /a?b=1 HTTP/1.1\r\nHost: svc.shop\r\nAccept:  */* \t\r\nX-Empty:\r\n\r\n');
    expect(head).toEqual({
      method: 'GET',
      target: '/a?b=1',
      minorVersion: 1,
      fields: [
        { name: 'host', value: 'svc.shop' },
        { name: 'accept', value: '*/*' },
        { name: 'x-empty', value: '' },
      ],
      host: 'svc.shop',
      body: { kind: 'none' },
      keepAlive: true,
      upgrade: false,
      expectContinue: false,
      hasTrailerField: false,
      connectionTokens: [],
    });
  });

  it('counts skipped leading empty lines in length', () => {
    const parsed = request('\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n');
    expect(parsed).toMatchObject({ ok: true, length: 4 + 27, head: { method: 'GET' } });
  });

  it('stops at the end of the head and ignores what follows', () => {
    const text = `${GET}Content-Length: 3\r\n\r\n`;
    const buf = Buffer.from(`${text}abcGET`, 'latin1');
    expect(parseRequestHead(buf, 0, buf.length, LIMITS)).toMatchObject({ ok: true, length: text.length });
  });

  it('parses at an offset and never reads at or beyond `end`', () => {
    const text = `${GET}\r\n`;
    const buf = Buffer.from(`xxxx${text}`, 'latin1');
    expect(parseRequestHead(buf, 4, buf.length, LIMITS)).toMatchObject({ ok: true, length: text.length });
    expect(parseRequestHead(buf, 4, buf.length - 1, LIMITS)).toEqual({ ok: false, incomplete: true });
  });

  it('keeps latin1 bytes (obs-text) of field values', () => {
    expect(okRequest(`${GET}X-Name: caf\xe9\r\n\r\n`).fields[1]).toEqual({ name: 'x-name', value: 'caf\xe9' });
  });

  const framing: [string, string, unknown][] = [
    ['no body fields', '', { kind: 'none' }],
    ['Content-Length 0', 'Content-Length: 0\r\n', { kind: 'length', length: 0 }],
    ['Content-Length with OWS', 'Content-Length:  42 \r\n', { kind: 'length', length: 42 }],
    ['15-digit Content-Length', 'Content-Length: 999999999999999\r\n', { kind: 'length', length: 999999999999999 }],
    ['chunked', 'Transfer-Encoding: chunked\r\n', { kind: 'chunked' }],
    ['chunked in any case', 'Transfer-Encoding: ChUnKeD\r\n', { kind: 'chunked' }],
    ['gzip then chunked', 'Transfer-Encoding: gzip, chunked\r\n', { kind: 'chunked' }],
    ['codings across fields', 'Transfer-Encoding: gzip;level=1\r\nTransfer-Encoding: chunked\r\n', { kind: 'chunked' }],
  ];
  it.each(framing)('body framing: %s', (_name, fields, body) => {
    expect(okRequest(`${GET}${fields}\r\n`).body).toEqual(body);
  });

  const connection: [string, string, Partial<RequestHead>][] = [
    ['HTTP/1.1 keeps alive', GET, { keepAlive: true }],
    ['HTTP/1.1 with close', `${GET}Connection: close\r\n`, { keepAlive: false, connectionTokens: ['close'] }],
    ['HTTP/1.0 closes', 'GET / HTTP/1.0\r\n', { keepAlive: false, host: undefined, minorVersion: 0 }],
    ['HTTP/1.0 with keep-alive', 'GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n', { keepAlive: true, connectionTokens: ['keep-alive'] }],
    ['close wins over keep-alive', 'GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: , close,\r\n', { keepAlive: false, connectionTokens: ['keep-alive', 'close'] }],
    ['Upgrade with the upgrade token', `${GET}Connection: Upgrade, X-Hop\r\nUpgrade: websocket\r\n`, { upgrade: true, connectionTokens: ['upgrade', 'x-hop'] }],
    ['Upgrade without the token', `${GET}Upgrade: websocket\r\n`, { upgrade: false }],
    ['the token without Upgrade', `${GET}Connection: upgrade\r\n`, { upgrade: false }],
    ['CONNECT', 'CONNECT svc.shop:443 HTTP/1.1\r\nHost: svc.shop:443\r\n', { upgrade: true, method: 'CONNECT', target: 'svc.shop:443' }],
    ['Expect: 100-continue', `${GET}Expect: 100-Continue\r\n`, { expectContinue: true }],
    ['another Expect', `${GET}Expect: 100-continued\r\n`, { expectContinue: false }],
    ['Trailer', `${GET}Trailer: x-checksum\r\nTransfer-Encoding: chunked\r\n`, { hasTrailerField: true, body: { kind: 'chunked' } }],
  ];
  it.each(connection)('connection semantics: %s', (_name, head, expected) => {
    expect(okRequest(`${head}\r\n`)).toMatchObject(expected);
  });

  it('returns incomplete for every proper prefix of a valid head', () => {
    const text = `\r\n${GET}Content-Length: 5\r\nConnection: keep-alive\r\n\r\n`;
    const buf = Buffer.from(text, 'latin1');
    for (let end = 0; end < buf.length; end++) {
      expect(parseRequestHead(buf, 0, end, LIMITS), `prefix of ${end} bytes`).toEqual({ ok: false, incomplete: true });
    }
    expect(parseRequestHead(buf, 0, buf.length, LIMITS).ok).toBe(true);
  });

  it('accepts a head of exactly maxHeadBytes and maxHeaderCount fields', () => {
    const text = `${GET}A: 1\r\n\r\n`;
    expect(request(text, { maxHeadBytes: text.length, maxHeaderCount: 2 }).ok).toBe(true);
  });
});

describe('parseRequestHead: refusals', () => {
  const refusals: [string, string, number][] = [
    // framing of lines
    ['bare LF ending the request line', 'GET / HTTP/1.1\nHost: h\r\n\r\n', 400],
    ['bare LF ending a field', 'GET / HTTP/1.1\r\nHost: h\n\r\n', 400],
    ['bare LF as the final line', 'GET / HTTP/1.1\r\nHost: h\r\n\n', 400],
    ['bare CR inside a value', 'GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n', 400],
    ['bare CR as a leading line', '\rGET / HTTP/1.1\r\nHost: h\r\n\r\n', 400],
    ['bare LF as a leading line', '\nGET / HTTP/1.1\r\nHost: h\r\n\r\n', 400],
    ['too many leading empty lines', '\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n', 400],
    // start line
    ['lower-case version', 'GET / http/1.1\r\nHost: h\r\n\r\n', 400],
    ['version with a suffix', 'GET / HTTP/1.11\r\nHost: h\r\n\r\n', 400],
    ['version without minor', 'GET / HTTP/1\r\nHost: h\r\n\r\n', 400],
    ['HTTP/2.0', 'GET / HTTP/2.0\r\nHost: h\r\n\r\n', 505],
    ['HTTP/1.2', 'GET / HTTP/1.2\r\nHost: h\r\n\r\n', 505],
    ['HTTP/0.9 style', 'GET /\r\n\r\n', 400],
    ['empty method', ' / HTTP/1.1\r\nHost: h\r\n\r\n', 400],
    ['method with a separator', 'GE(T / HTTP/1.1\r\nHost: h\r\n\r\n', 400],
    ['two spaces after the method', 'GET  / HTTP/1.1\r\nHost: h\r\n\r\n', 400],
    ['space in the target', 'GET /a b HTTP/1.1\r\nHost: h\r\n\r\n', 400],
    ['control byte in the target', 'GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n', 400],
    ['trailing space after the version', 'GET / HTTP/1.1 \r\nHost: h\r\n\r\n', 400],
    ['tab as separator', 'GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n', 400],
    // field lines
    ['obs-fold', 'GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n', 400],
    ['whitespace before the first field', 'GET / HTTP/1.1\r\n Host: h\r\n\r\n', 400],
    ['space before the colon', 'GET / HTTP/1.1\r\nHost : h\r\n\r\n', 400],
    ['tab before the colon', 'GET / HTTP/1.1\r\nHost\t: h\r\n\r\n', 400],
    ['no colon', 'GET / HTTP/1.1\r\nHost h\r\n\r\n', 400],
    ['empty name', 'GET / HTTP/1.1\r\n: h\r\nHost: h\r\n\r\n', 400],
    ['separator in the name', 'GET / HTTP/1.1\r\nHo/st: h\r\n\r\n', 400],
    ['NUL in a value', 'GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n', 400],
    ['DEL in a value', 'GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n', 400],
    ['vertical tab in a value', 'GET / HTTP/1.1\r\nHost: h\r\nX: a\x0bb\r\n\r\n', 400],
    // Host
    ['HTTP/1.1 without Host', 'GET / HTTP/1.1\r\n\r\n', 400],
    ['two Host fields', 'GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n', 400],
    ['two Host fields in HTTP/1.0', 'GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n', 400],
    ['a Host list', 'GET / HTTP/1.1\r\nHost: a, b\r\n\r\n', 400],
    // Content-Length
    ['signed Content-Length', `${GET}Content-Length: +5\r\n\r\n`, 400],
    ['negative Content-Length', `${GET}Content-Length: -5\r\n\r\n`, 400],
    ['hex Content-Length', `${GET}Content-Length: 0x5\r\n\r\n`, 400],
    ['space inside Content-Length', `${GET}Content-Length: 1 0\r\n\r\n`, 400],
    ['empty Content-Length', `${GET}Content-Length:\r\n\r\n`, 400],
    ['16-digit Content-Length', `${GET}Content-Length: 1000000000000000\r\n\r\n`, 400],
    ['conflicting Content-Length fields', `${GET}Content-Length: 5\r\nContent-Length: 6\r\n\r\n`, 400],
    ['conflicting Content-Length list', `${GET}Content-Length: 5, 6\r\n\r\n`, 400],
    // Equal copies too: never forwarded as received, since llhttp reads "5, 5" as invalid (a framing disagreement).
    ['repeated identical Content-Length fields', `${GET}Content-Length: 7\r\nContent-Length: 7\r\n\r\n`, 400],
    ['comma-listed identical Content-Length', `${GET}Content-Length: 7, 7,7\r\n\r\n`, 400],
    ['trailing comma in Content-Length', `${GET}Content-Length: 5,\r\n\r\n`, 400],
    ['decimal point in Content-Length', `${GET}Content-Length: 5.0\r\n\r\n`, 400],
    // Transfer-Encoding
    ['Transfer-Encoding with Content-Length', `${GET}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n`, 400],
    ['Content-Length after Transfer-Encoding', `${GET}Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n`, 400],
    ['final coding not chunked', `${GET}Transfer-Encoding: gzip\r\n\r\n`, 400],
    ['chunked before gzip', `${GET}Transfer-Encoding: chunked, gzip\r\n\r\n`, 400],
    ['chunked twice in one field', `${GET}Transfer-Encoding: chunked, chunked\r\n\r\n`, 400],
    ['chunked twice in two fields', `${GET}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n`, 400],
    ['chunked with a parameter', `${GET}Transfer-Encoding: chunked;q=1\r\n\r\n`, 400],
    ['chunked with a suffix', `${GET}Transfer-Encoding: chunkedx\r\n\r\n`, 400],
    ['empty Transfer-Encoding', `${GET}Transfer-Encoding:\r\n\r\n`, 400],
    ['trailing comma in Transfer-Encoding', `${GET}Transfer-Encoding: chunked,\r\n\r\n`, 400],
    ['quoted parameter hiding a comma', `${GET}Transfer-Encoding: gzip;x=",chunked"\r\n\r\n`, 400],
    ['Transfer-Encoding in HTTP/1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n', 400],
    // Connection
    ['a non-token in Connection', `${GET}Connection: close; x\r\n\r\n`, 400],
    // Connection naming a field that frames or routes the request: dropping it would reframe the message.
    ['Connection naming Content-Length', `${GET}Connection: content-length\r\nContent-Length: 5\r\n\r\n`, 400],
    ['Connection naming Transfer-Encoding', `${GET}Transfer-Encoding: chunked\r\nConnection: keep-alive, Transfer-Encoding\r\n\r\n`, 400],
    ['Connection naming Host, oddly spaced', `${GET}Connection: ,\t ,HOST ,\r\n\r\n`, 400],
    ['Connection naming a mesh field', `${GET}Connection: trellis-target\r\n\r\n`, 400],
    ['Connection naming the verified caller', `${GET}Connection: close\r\nConnection: X-Forwarded-Client-Cert\r\n\r\n`, 400],
    ['Connection naming the request id', `${GET}Connection: x-request-id\r\n\r\n`, 400],
  ];
  it.each(refusals)('%s', (_name, text, status) => {
    const parsed = request(text);
    expect(parsed).toMatchObject({ ok: false, incomplete: false, status });
    if (!parsed.ok && !parsed.incomplete) expect(parsed.reason).not.toBe('');
  });

  it('refuses more than maxHeaderCount fields with 431', () => {
    expect(request(`${GET}A: 1\r\nB: 2\r\n\r\n`, { maxHeadBytes: 8192, maxHeaderCount: 2 })).toMatchObject({ status: 431 });
  });

  it('refuses a complete head longer than maxHeadBytes with 431', () => {
    const text = `${GET}A: 1\r\n\r\n`;
    expect(request(text, { maxHeadBytes: text.length - 1, maxHeaderCount: 100 })).toMatchObject({ status: 431 });
  });

  it('refuses with 431 as soon as maxHeadBytes arrive without the end of the head', () => {
    const text = `${GET}X-Long: ${'a'.repeat(100)}`;
    const limits = { maxHeadBytes: 64, maxHeaderCount: 100 };
    expect(request(text.slice(0, 63), limits)).toEqual({ ok: false, incomplete: true });
    expect(request(text.slice(0, 64), limits)).toMatchObject({ ok: false, incomplete: false, status: 431 });
    // The same within complete lines: the end of the head is not among the first maxHeadBytes bytes.
    expect(request(`${GET}${'X: y\r\n'.repeat(20)}`, limits)).toMatchObject({ status: 431 });
  });

  it('refuses bytes that can never be in a head before the line ends', () => {
    expect(request('GET /\x00')).toMatchObject({ status: 400 });
    expect(request('GET / HTTP/1.1\r\nHost: h\rX')).toMatchObject({ status: 400 });
    expect(request('GET / HTTP/1.1\r\nHost: h\r')).toEqual({ ok: false, incomplete: true });
  });
});

describe('parseResponseHead', () => {
  it('reads the status line and fields', () => {
    expect(okResponse('HTTP/1.1 200 All Good\r\nContent-Length: 12\r\nX-A: b\r\n\r\n')).toEqual({
      status: 200,
      reason: 'All Good',
      minorVersion: 1,
      fields: [
        { name: 'content-length', value: '12' },
        { name: 'x-a', value: 'b' },
      ],
      body: { kind: 'length', length: 12 },
      keepAlive: true,
      connectionTokens: [],
    });
  });

  const statusLines: [string, string, number, string][] = [
    ['empty reason after SP', 'HTTP/1.1 204 \r\n\r\n', 204, ''],
    ['no SP before an empty reason', 'HTTP/1.1 204\r\n\r\n', 204, ''],
    ['status 999', 'HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n', 999, 'Odd'],
    ['reason with tabs and obs-text', 'HTTP/1.1 200 OK\tfine \xe9\r\nContent-Length: 0\r\n\r\n', 200, 'OK\tfine \xe9'],
  ];
  it.each(statusLines)('status line: %s', (_name, text, status, reason) => {
    expect(okResponse(text)).toMatchObject({ status, reason });
  });

  const framing: [string, string, string, unknown, boolean][] = [
    ['Content-Length', 'GET', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n', { kind: 'length', length: 3 }, true],
    ['chunked', 'GET', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', { kind: 'chunked' }, true],
    ['chunked ignores Content-Length', 'GET', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', { kind: 'chunked' }, true],
    ['final coding not chunked', 'GET', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n', { kind: 'until-close' }, false],
    ['no framing fields', 'GET', 'HTTP/1.1 200 OK\r\n\r\n', { kind: 'until-close' }, false],
    ['a HEAD response', 'HEAD', 'HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n', { kind: 'none' }, true],
    ['204', 'GET', 'HTTP/1.1 204 No Content\r\n\r\n', { kind: 'none' }, true],
    ['304 with Content-Length', 'GET', 'HTTP/1.1 304 Not Modified\r\nContent-Length: 30\r\n\r\n', { kind: 'none' }, true],
    ['100 Continue', 'POST', 'HTTP/1.1 100 Continue\r\n\r\n', { kind: 'none' }, true],
    ['1xx with framing fields', 'GET', 'HTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n', { kind: 'none' }, true],
    ['101 Switching Protocols', 'GET', 'HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n', { kind: 'none' }, true],
    ['2xx to CONNECT', 'CONNECT', 'HTTP/1.1 200 Connection Established\r\nContent-Length: 5\r\n\r\n', { kind: 'until-close' }, false],
    ['407 to CONNECT', 'CONNECT', 'HTTP/1.1 407 Proxy Auth\r\nContent-Length: 5\r\n\r\n', { kind: 'length', length: 5 }, true],
    ['HTTP/1.0 with Content-Length', 'GET', 'HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n', { kind: 'length', length: 5 }, false],
    ['HTTP/1.0 with keep-alive', 'GET', 'HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n', { kind: 'length', length: 5 }, true],
    ['Connection: close', 'GET', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n', { kind: 'length', length: 5 }, false],
  ];
  it.each(framing)('body framing: %s', (_name, method, text, body, keepAlive) => {
    expect(okResponse(text, method)).toMatchObject({ body, keepAlive });
  });

  const refusals: [string, string, number][] = [
    ['status below 100', 'HTTP/1.1 099 Low\r\n\r\n', 400],
    ['two-digit status', 'HTTP/1.1 20 OK\r\n\r\n', 400],
    ['four-digit status', 'HTTP/1.1 2000 OK\r\n\r\n', 400],
    ['status with a letter', 'HTTP/1.1 2x0 OK\r\n\r\n', 400],
    ['no SP after the version', 'HTTP/1.1200 OK\r\n\r\n', 400],
    ['HTTP/2.0', 'HTTP/2.0 200 OK\r\n\r\n', 505],
    ['garbage', 'HTTQ/1.1 200 OK\r\n\r\n', 400],
    ['control byte in the reason', 'HTTP/1.1 200 O\x01K\r\n\r\n', 400],
    ['bare LF', 'HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n', 400],
    ['conflicting Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n', 400],
    ['signed Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n', 400],
    ['chunked twice', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n', 400],
    ['Transfer-Encoding in HTTP/1.0', 'HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', 400],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nX: a\r\n\tb\r\n\r\n', 400],
    ['leading empty line', '\r\nHTTP/1.1 200 OK\r\n\r\n', 400],
    ['Connection naming Content-Length', 'HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 2\r\n\r\n', 400],
    ['Connection naming Transfer-Encoding', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: x, transfer-encoding\r\n\r\n', 400],
  ];
  it.each(refusals)('refuses %s', (_name, text, status) => {
    expect(response(text)).toMatchObject({ ok: false, incomplete: false, status });
  });

  it('returns incomplete for every proper prefix, and 431 beyond the limits', () => {
    const text = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n';
    const buf = Buffer.from(text, 'latin1');
    for (let end = 0; end < buf.length; end++) {
      expect(parseResponseHead(buf, 0, end, 'GET', LIMITS), `prefix of ${end} bytes`).toEqual({ ok: false, incomplete: true });
    }
    expect(parseResponseHead(buf, 0, buf.length, 'GET', { maxHeadBytes: text.length - 1, maxHeaderCount: 10 })).toMatchObject({ status: 431 });
    expect(parseResponseHead(buf, 0, buf.length, 'GET', { maxHeadBytes: 8192, maxHeaderCount: 0 })).toMatchObject({ status: 431 });
  });
});
