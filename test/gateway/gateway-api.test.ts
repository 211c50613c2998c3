/**
 * Gateway API objects, as the API server returns them (gateway.networking.k8s.io/v1 JSON), translated into
 * the gateway's config and validated by its own readers; what cannot be served is refused with its path.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseGatewayConfig } from '../../gateway/config-reader.js';
import { runCli } from '../helpers/cli.js';
import { translateGatewayApi } from '../../gateway/gateway-api.js';
import { RouteTable } from '../../gateway/route-table.js';

const gateway = {
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'Gateway',
  metadata: { name: 'public', namespace: 'edge', uid: 'x', resourceVersion: '1' },
  spec: {
    gatewayClassName: 'trellis',
    listeners: [
      { name: 'http', port: 8080, protocol: 'HTTP', allowedRoutes: { namespaces: { from: 'All' } } },
      { name: 'https', port: 8443, protocol: 'HTTPS', hostname: '*.example.com', tls: { mode: 'Terminate', certificateRefs: [{ kind: 'Secret', group: '', name: 'wildcard-cert' }] } },
    ],
  },
  status: { conditions: [] },
};

const httpRoute = {
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'HTTPRoute',
  metadata: { name: 'shop', namespace: 'shop' },
  spec: {
    parentRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'public', namespace: 'edge', sectionName: 'https' }],
    hostnames: ['shop.example.com'],
    rules: [
      {
        matches: [{ path: { type: 'PathPrefix', value: '/api' }, method: 'GET', headers: [{ type: 'Exact', name: 'X-Beta', value: '1' }], queryParams: [{ type: 'Exact', name: 'v', value: '2' }] }],
        filters: [
          { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v1' } } },
          { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-Env', value: 'prod' }], add: [{ name: 'X-Edge', value: 'public' }], remove: ['X-Debug'] } },
        ],
        backendRefs: [{ group: '', kind: 'Service', name: 'orders', port: 8080, weight: 1 }],
        timeouts: { request: '10s' },
      },
      { matches: [{ path: { type: 'Exact', value: '/old' } }], filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'https', path: { type: 'ReplaceFullPath', replaceFullPath: '/new' }, statusCode: 301 } }] },
    ],
  },
};

const grpcRoute = {
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'GRPCRoute',
  metadata: { name: 'orders-grpc', namespace: 'shop' },
  spec: {
    parentRefs: [{ name: 'public', namespace: 'edge' }],
    hostnames: ['grpc.example.com'],
    rules: [{ matches: [{ method: { type: 'Exact', service: 'shop.v1.Orders', method: 'Get' } }], backendRefs: [{ name: 'orders', port: 9090 }] }],
  },
};

const opts = { gateway: { namespace: 'edge', name: 'public' }, mesh: { control: 'https://trellis-control.trellis-system:15012' }, certDir: '/etc/trellis-gateway/certs' };

describe('Gateway API translation', () => {
  it('translates a Gateway, an HTTPRoute and a GRPCRoute into routes that serve as the API says', () => {
    const config = translateGatewayApi([gateway, httpRoute, grpcRoute, { apiVersion: 'v1', kind: 'Service', metadata: { name: 'x' } }], opts, 'objects.json');
    expect(config.name).toBe('public');
    expect(config.namespace).toBe('edge');
    expect(config.listeners.map((l) => [l.name, l.protocol, l.port])).toEqual([['http', 'http', 8080], ['https', 'https', 8443]]);
    expect(config.listeners[1]?.tls?.certificates[0]).toEqual({ hosts: ['*.example.com'], certificate: '/etc/trellis-gateway/certs/edge/wildcard-cert/tls.crt', key: '/etc/trellis-gateway/certs/edge/wildcard-cert/tls.key' });
    const api = config.routes.find((r) => r.destination?.service === 'orders' && r.destination.port === 8080);
    expect(api).toMatchObject({ hosts: ['shop.example.com'], listeners: ['https'], rewrite: { prefix: '/v1' }, timeoutMs: 10_000, requestHeaders: { set: { 'x-env': 'prod', 'x-edge': 'public' }, remove: ['x-debug'] } });
    expect(api?.match).toEqual({ path: { prefix: '/api' }, methods: ['GET'], headers: [{ name: 'x-beta', exact: '1' }], query: [{ name: 'v', exact: '2' }] });
    const table = new RouteTable(config);
    const req = (method: string, path: string, query = '', headers: Record<string, string> = {}) => ({ method, path, query, headerValues: (n: string) => (headers[n] === undefined ? [] : [headers[n] as string]) });
    expect(table.find('https', 'shop.example.com', req('GET', '/api/x', 'v=2', { 'x-beta': '1' }))?.spec).toBe(api);
    expect(table.find('https', 'shop.example.com', req('GET', '/old'))?.spec.redirect).toEqual({ scheme: 'https', path: '/new', status: 301 });
    // The GRPCRoute has no sectionName: it attaches to both listeners; on https its host must fit *.example.com.
    expect(table.find('http', 'grpc.example.com', req('POST', '/shop.v1.Orders/Get'))?.spec.destination).toEqual({ service: 'orders', namespace: 'shop', port: 9090 });
    expect(table.find('https', 'grpc.example.com', req('POST', '/shop.v1.Orders/Get'))).toBeDefined();
    expect(table.find('http', 'grpc.example.com', req('POST', '/shop.v1.Orders/List'))).toBeUndefined();
    // The HTTPRoute names the https listener only.
    expect(table.find('http', 'shop.example.com', req('GET', '/api/x', 'v=2', { 'x-beta': '1' }))).toBeUndefined();
  });

  it('refuses what it cannot serve, naming each place', () => {
    const bad = structuredClone(httpRoute);
    bad.spec.rules[0]!.backendRefs!.push({ group: '', kind: 'Service', name: 'orders-v2', port: 8080, weight: 1 });
    (bad.spec.rules[1] as { matches: unknown[] }).matches = [{ path: { type: 'RegularExpression', value: '/o.*' } }];
    (bad.spec.rules[1] as { filters: unknown[] }).filters.push({ type: 'RequestMirror', requestMirror: { backendRef: { name: 'm', port: 80 } } });
    const gw = structuredClone(gateway);
    (gw.spec.listeners as unknown[]).push({ name: 'tls', port: 9443, protocol: 'TLS', tls: { mode: 'Passthrough' } });
    let message = '';
    try {
      translateGatewayApi([gw, bad], opts, 'objects.json');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/Gateway edge\/public spec\.listeners\[2\]: protocol "TLS" is not served/);
    expect(message).toMatch(/HTTPRoute shop\/shop spec\.rules\[0\]\.backendRefs: expected exactly one backendRef/);
    expect(message).toMatch(/spec\.rules\[1\]\.matches\[0\]\.path\.type: RegularExpression is not served/);
    expect(message).toMatch(/spec\.rules\[1\]\.filters\[1\]: filter "RequestMirror" is not served/);
  });

  it('hands values the readers refuse back with their path in the translated config', () => {
    const bad = structuredClone(httpRoute);
    (bad.spec.rules[0]!.matches[0]! as { headers: unknown[] }).headers = [{ type: 'RegularExpression', name: 'x', value: '(a+)+$' }];
    expect(() => translateGatewayApi([gateway, bad], opts, 'objects.json')).toThrow(/regex/);
    expect(() => translateGatewayApi([gateway], { ...opts, gateway: { namespace: 'edge', name: 'nope' } }, 'objects.json')).toThrow(/no Gateway edge\/nope/);
  });
});

describe('trellis gateway translate', () => {
  it('reads kubectl JSON (a List) and prints a config that `gateway run` reads back the same', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-gwapi-'));
    try {
      const file = join(dir, 'objects.json');
      writeFileSync(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [gateway, httpRoute, grpcRoute] }));
      const r = await runCli(['gateway', 'translate', '--objects', file, '--gateway', 'edge/public', '--control', 'https://control:15012', '--cert-dir', '/certs']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const back = parseGatewayConfig(r.stdout, join(dir, 'out.yaml'));
      const direct = translateGatewayApi([gateway, httpRoute, grpcRoute], { ...opts, mesh: { control: 'https://control:15012' }, certDir: '/certs' }, 'x');
      expect(back.routes).toEqual(direct.routes);
      expect(back.listeners).toEqual(direct.listeners);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
