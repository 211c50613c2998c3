import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../../cli/main.js';
import { captureCli } from '../../helpers/cli.js';

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = captureCli();
  const code = await main(argv, io.ctx);
  return { code, out: io.out(), err: io.err() };
}

const FILES = {
  'allow.yaml': `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: payments-callers, namespace: shop }
spec:
  destination: payments
  rules:
    - action: allow
      from: [orders]
`,
  'traffic.yaml': `apiVersion: trellis.dev/v1alpha1
kind: TrafficRoute
metadata: { name: payments, namespace: shop }
spec:
  destination: payments
  rules:
    - name: beta
      match: { headers: [{ name: x-beta, exact: "1" }] }
      backends: [{ labels: { version: v2 } }]
    - name: canary
      backends: [{ labels: { version: v1 }, weight: 95 }, { labels: { version: v2 }, weight: 5 }]
---
apiVersion: trellis.dev/v1alpha1
kind: RetryPolicy
metadata: { name: payments-retry, namespace: shop }
spec:
  destination: payments
  attempts: 4
  retryOn: [gateway-error]
`,
};

describe('trellis explain with traffic management', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'trellis-explain-traffic-'));
    for (const [name, text] of Object.entries(FILES)) await writeFile(join(dir, name), text);
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('shows the matching rule, backend weights, timeouts, retries and the authorization decision in one answer', async () => {
    const plain = await run(['explain', '--policy', dir, '--from', 'shop/orders', '--to', 'shop/payments', '--method', 'GET', '--path', '/x']);
    expect(plain.code).toBe(0);
    expect(plain.out).toContain('ALLOW: shop/orders -> shop/payments (HTTP GET /x)');
    expect(plain.out).toContain('route rule: payments/canary (from shop/payments)');
    expect(plain.out).toContain('backend version=v1: weight 95 (95.0%)');
    expect(plain.out).toContain('backend version=v2: weight 5 (5.0%)');
    expect(plain.out).toMatch(/retry \(from shop\/payments-retry\): .*"attempts":4/);
    expect(plain.out).toContain('timeouts (from default): {"connectMs":5000,"requestMs":15000');

    const beta = await run(['explain', '--policy', dir, '--from', 'shop/orders', '--to', 'shop/payments', '--method', 'GET', '--path', '/x', '--header', 'X-Beta=1', '--json']);
    const answer = JSON.parse(beta.out) as { decision: { allowed: boolean }; traffic: { rule: string; backends: { share: string }[] } };
    expect(answer.decision.allowed).toBe(true);
    expect(answer.traffic.rule).toBe('payments/beta');
    expect(answer.traffic.backends.map((b) => b.share)).toEqual(['100.0%']);
  });

  it('refuses a directory whose traffic resources are invalid, with file:line:column', async () => {
    await writeFile(join(dir, 'bad.yaml'), 'apiVersion: trellis.dev/v1alpha1\nkind: CircuitBreaker\nmetadata: { name: b, namespace: shop }\nspec:\n  destination: payments\n  maxRequests: lots\n');
    const res = await run(['explain', '--policy', dir, '--from', 'shop/orders', '--to', 'shop/payments']);
    expect(res.code).toBe(2);
    expect(res.err).toContain('bad.yaml:6:16: spec.maxRequests: expected an integer');
  });

  it('refuses a malformed --header', async () => {
    const res = await run(['explain', '--policy', dir, '--from', 'shop/orders', '--to', 'shop/payments', '--method', 'GET', '--path', '/', '--header', 'novalue']);
    expect(res.code).toBe(2);
    expect(res.err).toContain('expected NAME=VALUE');
  });
});

describe('trellis policy check with traffic resources', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'trellis-check-traffic-'));
    for (const [name, text] of Object.entries(FILES)) await writeFile(join(dir, name), text);
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('counts both kinds, and rejects the whole set for one bad traffic document', async () => {
    const ok = await run(['policy', 'check', dir]);
    expect(ok.code).toBe(0);
    expect(ok.out).toBe('ok: 1 policy and 2 traffic resources in 2 files\n');
    await writeFile(join(dir, 'bad.yaml'), 'apiVersion: trellis.dev/v1alpha1\nkind: TrafficRoute\nmetadata: { name: r, namespace: shop }\nspec:\n  destination: payments\n  rules:\n    - match: { headers: [{ name: x, regex: "(a*)*b" }] }\n      backends: [{}]\n');
    const bad = await run(['policy', 'check', dir]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('bad.yaml:7:44: spec.rules[0].match.headers[0].regex: regex a group holding a quantifier');
    expect(bad.err).toContain('policy rejected (nothing would be applied)');
  });
});
