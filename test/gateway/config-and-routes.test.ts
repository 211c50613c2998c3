/**
 * The gateway config (every problem at file:line:column, the whole file refused), route precedence,
 * path rewrites, the client's address under trusted hops, and the token bucket.
 */
import { describe, expect, it } from 'vitest';
import { configIssuesOf, formatConfigIssue } from '../../common/config-issues.js';
import { parseGatewayConfig } from '../../gateway/config-reader.js';
import { clientView, forwardedRequestHeaders } from '../../gateway/client-headers.js';
import { upstreamPath } from '../../gateway/forwarder.js';
import { hostMatches, requestHost } from '../../gateway/host-match.js';
import { RateLimiter } from '../../gateway/rate-limiter.js';
import { RouteTable } from '../../gateway/route-table.js';

const BASE = `mesh: { control: "https://127.0.0.1:15012" }
listeners:
  - { name: web, port: 8080, protocol: http }
`;

function parse(routes: string, extra = ''): ReturnType<typeof parseGatewayConfig> {
  return parseGatewayConfig(`${BASE}${extra}routes:\n${routes}`, '/etc/gw.yaml');
}

function problems(text: string): string[] {
  try {
    parseGatewayConfig(text, '/etc/gw.yaml');
  } catch (err) {
    return configIssuesOf(err).map(formatConfigIssue);
  }
  return [];
}

const req = (method: string, path: string, query = '', headers: Record<string, string> = {}) => ({ method, path, query, headerValues: (n: string) => (headers[n] === undefined ? [] : [headers[n] as string]) });

describe('gateway config', () => {
  it('reads a valid file with defaults', () => {
    const c = parse('  - { name: shop, hosts: [shop.example.com], destination: { service: orders, namespace: shop } }\n');
    expect(c.name).toBe('gateway');
    expect(c.namespace).toBe('trellis-gateway');
    expect(c.routes[0]?.destination).toEqual({ service: 'orders', namespace: 'shop', port: undefined });
    expect(Object.isFrozen(c.routes[0])).toBe(true);
  });

  it('reports every problem of the file at once with file:line:column, and refuses it whole', () => {
    const found = problems(`mesh: { control: "http://127.0.0.1:15012" }
listeners:
  - { name: web, port: 8080, protocol: htp }
  - { name: tls, port: 8443, protocol: https }
routes:
  - name: a
    hosts: [Shop.Example.com]
    destination: { service: orders, namespace: shop }
    redirect: { path: /x }
  - name: b
    match: { path: { prefix: "/api/*" } }
    destination: { service: orders }
    rateLimit: { perSecond: 5, by: claim, claim: sub }
    jwt: { provider: nobody }
  - name: c
    destination: { service: orders, namespace: shop }
    cors: { allowOrigins: ["*"], allowCredentials: true }
    listeners: [nowhere]
jwtProviders:
  - { name: idp, issuer: x, jwks: { url: "http://idp/keys" } }
`);
    const text = found.join('\n');
    expect(text).toMatch(/\/etc\/gw\.yaml:1:\d+: mesh\.control: expected an https:\/\/ URL/);
    expect(text).toMatch(/gw\.yaml:3:\d+: listeners\[0\]\.protocol: expected one of "http", "https", got "htp"/);
    expect(text).toMatch(/gw\.yaml:4:\d+: .*needs a "tls" section/);
    expect(text).toMatch(/gw\.yaml:7:\d+: routes\[0\]\.hosts\[0\]/);
    expect(text).toMatch(/"destination" and "redirect" exclude each other/);
    expect(text).toMatch(/routes\[1\]\.match\.path\.prefix: write a prefix without "\*"/);
    expect(text).toMatch(/routes\[1\]\.destination: missing required field "namespace"/);
    expect(text).toMatch(/no jwtProviders entry is named "nobody"/);
    expect(text).toMatch(/allowCredentials: true" with origin "\*"/);
    expect(text).toMatch(/no listener is named "nowhere"/);
    expect(text).toMatch(/keys are fetched over https only/);
    expect(found.length).toBeGreaterThanOrEqual(11);
  });

  it('refuses claims mapped onto headers the gateway or mesh set, and HMAC or none algorithms', () => {
    const text = problems(`${BASE}jwtProviders:
  - { name: idp, issuer: x, jwks: { file: k.json }, algorithms: [HS256, none] }
routes:
  - { name: a, destination: { service: o, namespace: s }, jwt: { provider: idp, claimHeaders: { sub: x-forwarded-for, role: trellis-peer } } }
`).join('\n');
    expect(text).toMatch(/algorithms\[0\]: expected one of "RS256"/);
    expect(text).toMatch(/algorithms\[1\]/);
    expect(text).toMatch(/sub: "x-forwarded-for" is not a header a claim may be mapped to/);
    expect(text).toMatch(/role: "trellis-peer"/);
  });

  it('refuses unknown fields with a suggestion, and YAML alias floods', () => {
    expect(problems(`${BASE}routes:\n  - { name: a, destinaton: { service: o, namespace: s } }\n`).join('\n')).toMatch(/unknown field \(did you mean "destination"\?\)/);
    const aliases = `a: &a [x]\n${Array.from({ length: 120 }, (_, i) => `k${i}: *a`).join('\n')}\n`;
    expect(problems(`${BASE}${aliases}`).join('\n')).toMatch(/aliases|unknown field/);
  });
});

describe('the shipped gateway config', () => {
  it('deploy/kubernetes/gateway holds a base config the gateway accepts in --kubernetes mode', async () => {
    const { mkdtempSync, readFileSync, rmSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { parseAllDocuments } = await import('yaml');
    const { readBase } = await import('../../cli/gateway-kubernetes.js');
    const file = new URL('../../deploy/kubernetes/gateway/gateway.yaml', import.meta.url).pathname;
    const cm = parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS() as { kind: string; data?: Record<string, string> }).find((o) => o.kind === 'ConfigMap');
    const dir = mkdtempSync(join(tmpdir(), 'trellis-gw-base-'));
    try {
      const baseFile = join(dir, 'gateway.yaml');
      writeFileSync(baseFile, cm?.data?.['gateway.yaml'] ?? '');
      // Listeners and routes come from the Gateway API: the base leaves them out, and the readers accept the rest.
      const base = await readBase(baseFile);
      expect(base).not.toHaveProperty('listeners');
      expect(base).toHaveProperty('mesh');
      writeFileSync(baseFile, `${cm?.data?.['gateway.yaml'] ?? ''}\nroutes: []\n`);
      await expect(readBase(baseFile)).rejects.toThrow(/comes from the Gateway API/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('route precedence', () => {
  const config = parse(`  - { name: wild, hosts: ["*.example.com"], destination: { service: w, namespace: s } }
  - { name: api-get, hosts: [api.example.com], match: { path: { prefix: /v1 }, methods: [GET] }, destination: { service: a, namespace: s } }
  - { name: api-hdr, hosts: [api.example.com], match: { headers: [{ name: x-beta, exact: "1" }], query: [{ name: q, present: true }] }, destination: { service: b, namespace: s } }
  - { name: deep, hosts: ["*.deep.example.com"], destination: { service: d, namespace: s } }
  - { name: any, destination: { service: z, namespace: s } }
`);
  const table = new RouteTable(config);
  const find = (host: string, r: ReturnType<typeof req>): string | undefined => table.find('web', host, r)?.spec.name;

  it('an exact host beats wildcards; within a host, file order; an unmatched exact host falls through', () => {
    expect(find('api.example.com', req('GET', '/v1/x'))).toBe('api-get');
    expect(find('api.example.com', req('GET', '/v1x'))).toBe('wild');
    expect(find('api.example.com', req('POST', '/v1/x', 'q=1', { 'x-beta': '1' }))).toBe('api-hdr');
    expect(find('api.example.com', req('POST', '/v1/x', '', { 'x-beta': '1' }))).toBe('wild');
    expect(find('a.deep.example.com', req('GET', '/'))).toBe('deep');
    expect(find('example.com', req('GET', '/'))).toBe('any');
    expect(table.find('other-listener', 'api.example.com', req('GET', '/'))).toBeUndefined();
  });

  it('host patterns and request hosts', () => {
    expect(hostMatches('*.example.com', 'a.b.example.com')).toBe(true);
    expect(hostMatches('*.example.com', 'example.com')).toBe(false);
    expect(hostMatches('*.example.com', 'evilexample.com')).toBe(false);
    expect(requestHost('Shop.Example.COM:8443')).toBe('shop.example.com');
    expect(requestHost('shop.example.com.')).toBe('shop.example.com');
    expect(requestHost('[::1]:80')).toBe('[::1]');
    expect(requestHost('a b')).toBeUndefined();
    expect(requestHost('host:port')).toBeUndefined();
    expect(requestHost('x@evil.com')).toBeUndefined();
  });

  it('rewrites the matched prefix segment-wise, keeps the query', () => {
    const c = parse('  - { name: r, match: { path: { prefix: /api } }, rewrite: { prefix: / }, destination: { service: o, namespace: s } }\n');
    const spec = c.routes[0] as (typeof c.routes)[number];
    expect(upstreamPath(spec, '/api/items', 'a=1')).toBe('/items?a=1');
    expect(upstreamPath(spec, '/api', '')).toBe('/');
    const c2 = parse('  - { name: r, match: { path: { prefix: /api } }, rewrite: { prefix: /v2/ }, destination: { service: o, namespace: s } }\n');
    expect(upstreamPath(c2.routes[0] as (typeof c.routes)[number], '/api/x', '')).toBe('/v2/x');
  });
});

describe('client address and forwarded headers', () => {
  it('believes exactly the trusted hops', () => {
    expect(clientView('10.0.0.9', '1.1.1.1, 2.2.2.2', 0)).toEqual({ client: '10.0.0.9', chain: ['10.0.0.9'] });
    expect(clientView('10.0.0.9', '1.1.1.1, 2.2.2.2', 1)).toEqual({ client: '2.2.2.2', chain: ['2.2.2.2', '10.0.0.9'] });
    expect(clientView('10.0.0.9', ['1.1.1.1', '2.2.2.2'], 2)).toEqual({ client: '1.1.1.1', chain: ['1.1.1.1', '2.2.2.2', '10.0.0.9'] });
    // Fewer entries than trusted hops: the leftmost there is.
    expect(clientView('10.0.0.9', '2.2.2.2', 5).client).toBe('2.2.2.2');
  });

  it('drops what a client may not send and rebuilds the forwarding fields', () => {
    const out = forwardedRequestHeaders(
      { host: 'h', 'trellis-target': 'x', 'x-forwarded-client-cert': 'y', te: 'trailers', upgrade: 'h2c', 'x-request-id': 'bad id\u0000', forwarded: 'for=1.1.1.1', 'x-keep': 'k', 'x-user': 'forged', connection: 'x-other', 'x-other': '1' },
      { view: { client: '::1', chain: ['::1'] }, host: 'shop', proto: 'https', alsoDrop: new Set(['x-user']) },
    );
    expect(out).toEqual({ 'x-keep': 'k', host: 'shop', 'x-forwarded-for': '::1', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'shop', forwarded: 'for="[::1]";proto=https;host="shop"' });
    expect(forwardedRequestHeaders({ connection: 'close, transfer-encoding' }, { view: { client: 'a', chain: ['a'] }, host: 'h', proto: 'http', alsoDrop: new Set() })).toEqual({ refused: 'transfer-encoding' });
  });
});

describe('token bucket', () => {
  it('admits the burst, then one per 1/rate, and says how long to wait', () => {
    let now = 0;
    const limiter = new RateLimiter({ perSecond: 2, burst: 3, key: { by: 'client' } }, 100_000, () => now);
    expect([limiter.take('a'), limiter.take('a'), limiter.take('a')]).toEqual([0, 0, 0]);
    expect(limiter.take('a')).toBe(1);
    expect(limiter.take('b')).toBe(0);
    now += 500;
    expect(limiter.take('a')).toBe(0);
    expect(limiter.take('a')).toBe(1);
    now += 10_000;
    expect([limiter.take('a'), limiter.take('a'), limiter.take('a'), limiter.take('a')]).toEqual([0, 0, 0, 1]);
  });

  it('keeps memory bounded under a flood of distinct clients', () => {
    const limiter = new RateLimiter({ perSecond: 1, burst: 1, key: { by: 'client' } }, 1_000);
    for (let i = 0; i < 50_000; i++) limiter.take(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
    expect(limiter.size).toBe(1_000);
  });
});
