/**
 * `trellis explain --gateway`: the route that serves a host and path, and the policy decision for the
 * gateway's identity calling that route's service with the path as forwarded.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.js';

let dir: string;
let config: string;
let policy: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'trellis-explain-gw-'));
  config = join(dir, 'gw.yaml');
  policy = join(dir, 'policy');
  writeFileSync(config, `name: public
namespace: edge
mesh: { control: "https://127.0.0.1:15012" }
listeners: [{ name: web, port: 8080, protocol: http }]
routes:
  - { name: api, hosts: ["*.example.com"], match: { path: { prefix: /api } }, rewrite: { prefix: /v1 }, destination: { service: orders, namespace: shop }, rateLimit: { perSecond: 10 } }
  - { name: admin, hosts: [shop.example.com], match: { path: { prefix: /admin } }, destination: { service: admin, namespace: shop } }
  - { name: old, hosts: [shop.example.com], match: { path: { exact: /old } }, redirect: { path: /new, status: 308 } }
`);
  mkdirSync(policy);
  writeFileSync(join(policy, 'orders.yaml'), `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: from-gateway, namespace: shop }
spec:
  destination: orders
  rules:
    - action: allow
      from: [edge/public]
      http: { paths: ["/v1/*"] }
`);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('trellis explain --gateway', () => {
  it('names the route and the decision on the forwarded path', async () => {
    const r = await runCli(['explain', '--policy', policy, '--gateway', config, '--host', 'shop.example.com', '--path', '/api/items?x=1']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/route api \(hosts \*\.example\.com\); checks: rate limit 10\/s/);
    expect(r.stdout).toMatch(/forwards to shop\/orders as GET \/v1\/items\?x=1/);
    expect(r.stdout).toMatch(/^ALLOW: edge\/public -> shop\/orders \(HTTP GET \/v1\/items\)/m);
    expect(r.stdout).toMatch(/policy shop\/from-gateway/);
  });

  it('denies a route whose service no policy lets the gateway call, and says so with --exit-code', async () => {
    const r = await runCli(['explain', '--policy', policy, '--gateway', config, '--host', 'shop.example.com', '--path', '/admin/x', '--exit-code']);
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/route admin/);
    expect(r.stdout).toMatch(/^DENY: edge\/public -> shop\/admin/m);
  });

  it('says when no route matches, and shows redirects', async () => {
    const none = await runCli(['explain', '--policy', policy, '--gateway', config, '--host', 'other.test', '--path', '/']);
    expect(none.stdout).toMatch(/no route matches: 404/);
    const redirect = await runCli(['explain', '--policy', policy, '--gateway', config, '--host', 'shop.example.com', '--path', '/old']);
    expect(redirect.stdout).toMatch(/route old .*\n\s+redirect 308 to path \/new/);
  });

  it('refuses --from/--to beside --gateway, and a path it cannot normalise', async () => {
    expect((await runCli(['explain', '--policy', policy, '--gateway', config, '--host', 'h', '--path', '/', '--from', 'a/b'])).code).toBe(2);
    expect((await runCli(['explain', '--policy', policy, '--gateway', config, '--host', 'h', '--path', '/a/..;/b'])).code).toBe(2);
  });
});
