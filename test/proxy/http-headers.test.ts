/**
 * Header mapping between the app's HTTP/1.1 and the tunnel's HTTP/2 (proxy/http/header-rules.ts), and the
 * path handling of the inbound's authorization (normalised path judged and forwarded, query kept).
 */
import { describe, expect, it } from 'vitest';
import { acceptableRequestId, h1RequestToH2, h1ResponseToH2, h2RequestToH1, h2ResponseToH1, responseHasNoBody } from '../../proxy/http/header-rules.js';
import { forwardTarget } from '../../proxy/inbound/http/authorization.js';

describe('h1RequestToH2', () => {
  it('moves the request line to pseudo-headers and adds the target and request id', () => {
    const out = h1RequestToH2('POST', '/a?b=1', 'payments.shop', { host: 'payments.shop', 'content-type': 'text/plain', accept: '*/*' }, 'payments.shop:8080', 'id-1');
    expect(out).toEqual({
      ':method': 'POST',
      ':scheme': 'http',
      ':path': '/a?b=1',
      ':authority': 'payments.shop',
      'content-type': 'text/plain',
      accept: '*/*',
      'trellis-target': 'payments.shop:8080',
      'x-request-id': 'id-1',
    });
  });

  it('drops hop-by-hop fields, the fields Connection names, and any trellis-* the app sent', () => {
    const out = h1RequestToH2(
      'GET',
      '/',
      'h',
      {
        connection: 'keep-alive, X-Secret-Hop',
        'keep-alive': 'timeout=5',
        'proxy-connection': 'keep-alive',
        'transfer-encoding': 'chunked',
        upgrade: 'websocket',
        te: 'gzip',
        'x-secret-hop': '1',
        'trellis-target': 'evil.ns:1',
        'trellis-denied-by': 'forged',
        'x-kept': 'yes',
      },
      'payments.shop:8080',
      'id',
    );
    expect(Object.keys(out).sort()).toEqual([':authority', ':method', ':path', ':scheme', 'trellis-target', 'x-kept', 'x-request-id']);
    expect(out['trellis-target']).toBe('payments.shop:8080');
  });

  it('keeps "te: trailers", the one TE value HTTP/2 allows', () => {
    expect(h1RequestToH2('GET', '/', 'h', { te: 'trailers' }, 't.n:1', 'id').te).toBe('trailers');
  });
});

describe('h2RequestToH1', () => {
  it('restores Host from :authority and sets the verified caller identity', () => {
    const out = h2RequestToH1(
      { ':method': 'GET', ':path': '/', ':authority': 'payments.shop', ':scheme': 'http', 'trellis-target': 'payments.shop:8080', 'x-forwarded-client-cert': 'URI=spiffe://forged', cookie: 'a=1; b=2' },
      'id-9',
      'spiffe://cluster.local/ns/shop/sa/orders',
    );
    expect(out).toEqual({ host: 'payments.shop', cookie: 'a=1; b=2', 'x-request-id': 'id-9', 'x-forwarded-client-cert': 'URI=spiffe://cluster.local/ns/shop/sa/orders' });
  });
});

describe('responses', () => {
  it('h1 → h2 keeps repeated fields and drops connection-specific ones and trellis-* from the app', () => {
    const out = h1ResponseToH2(200, {
      'set-cookie': ['a=1', 'b=2'],
      'content-length': ['5'],
      connection: ['keep-alive'],
      'keep-alive': ['timeout=5'],
      'transfer-encoding': ['chunked'],
      'trellis-error': ['TRELLIS_FORGED'],
    });
    expect(out).toEqual({ ':status': 200, 'set-cookie': ['a=1', 'b=2'], 'content-length': '5' });
  });

  it('h2 → h1 drops pseudo-headers and passes the inbound sidecar\'s own trellis-* fields', () => {
    expect(h2ResponseToH1({ ':status': '403', 'trellis-error': 'TRELLIS_HTTP_DENIED', 'content-type': 'text/plain' })).toEqual({
      'trellis-error': 'TRELLIS_HTTP_DENIED',
      'content-type': 'text/plain',
    });
  });

  it('knows which responses have no body', () => {
    expect(responseHasNoBody('HEAD', 200)).toBe(true);
    expect(responseHasNoBody('GET', 204)).toBe(true);
    expect(responseHasNoBody('GET', 304)).toBe(true);
    expect(responseHasNoBody('GET', 200)).toBe(false);
    expect(responseHasNoBody('POST', 201)).toBe(false);
  });
});

describe('acceptableRequestId', () => {
  it('passes sane ids and refuses odd or oversized ones', () => {
    expect(acceptableRequestId('abc-123_x.y:z')).toBe('abc-123_x.y:z');
    expect(acceptableRequestId('has space')).toBeUndefined();
    expect(acceptableRequestId('a'.repeat(129))).toBeUndefined();
    expect(acceptableRequestId(['a', 'b'])).toBeUndefined();
    expect(acceptableRequestId(undefined)).toBeUndefined();
  });
});

describe('forwardTarget', () => {
  it('forwards an already normal target unchanged', () => {
    expect(forwardTarget('GET', '/a/b?x=1')).toEqual({ policyPath: '/a/b', forwardPath: '/a/b?x=1' });
  });

  it('judges and forwards the normalised path, keeping the query as sent', () => {
    expect(forwardTarget('GET', '/a/../admin//x?q=/../')).toEqual({ policyPath: '/admin/x', forwardPath: '/admin/x?q=/../' });
    expect(forwardTarget('GET', '/%61dmin')).toEqual({ policyPath: '/admin', forwardPath: '/admin' });
  });

  it('refuses targets that are not absolute paths, except OPTIONS *', () => {
    expect(forwardTarget('GET', 'http://evil/')).toBeNull();
    expect(forwardTarget('GET', '/bad%zz')).toBeNull();
    expect(forwardTarget('OPTIONS', '*')).toEqual({ policyPath: '*', forwardPath: '*' });
    expect(forwardTarget('GET', '*')).toBeNull();
  });
});
