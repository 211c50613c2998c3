/**
 * Callers from federated trust domains: only `from` entries written as SPIFFE IDs or patterns naming their
 * trust domain match them; short names and `*` never do.
 */
import { describe, expect, it } from 'vitest';
import { configIssuesOf, formatConfigIssue } from '../../common/config-issues.js';
import { compilePolicy, parsePolicyFiles, type AuthorizationRequest } from '../../policy/index.js';

const TD = 'mesh.local';
const ROOT = 'trellis-system';

function compiled(from: string[], extra = '') {
  const text = `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: p, namespace: shop }
spec:
  destination: payments
  rules:
    - action: allow
      from: ${JSON.stringify(from)}
${extra}`;
  return compilePolicy(parsePolicyFiles([{ path: 'p.yaml', text }], { rootNamespace: ROOT }), { trustDomain: TD, rootNamespace: ROOT });
}

function from(trustDomain: string, namespace: string, service: string): AuthorizationRequest {
  return { source: { trustDomain, namespace, service }, destination: { namespace: 'shop', service: 'payments' }, protocol: 'tcp' };
}

describe('federated callers in policy', () => {
  it('short names, namespace patterns and * never match a foreign trust domain', () => {
    const p = compiled(['orders', 'shop/*', '*', 'x/orders']);
    expect(p.evaluate(from(TD, 'shop', 'orders')).allowed).toBe(true);
    for (const req of [from('other.example', 'shop', 'orders'), from('other.example', 'x', 'orders')]) {
      const d = p.evaluate(req);
      expect(d.allowed).toBe(false);
      expect(d.reason).toMatch(/trust domain is not this mesh's .* no policy names it/);
    }
  });

  it('a full SPIFFE ID admits exactly that caller of that trust domain', () => {
    const p = compiled(['spiffe://other.example/ns/x/sa/y']);
    expect(p.evaluate(from('other.example', 'x', 'y'))).toMatchObject({ allowed: true, policy: 'shop/p', rule: 0 });
    expect(p.evaluate(from('other.example', 'x', 'z')).allowed).toBe(false);
    expect(p.evaluate(from('other.exampl', 'x', 'y')).allowed).toBe(false);
    expect(p.evaluate(from('third.example', 'x', 'y')).allowed).toBe(false);
    expect(p.evaluate(from(TD, 'x', 'y')).allowed).toBe(false);
  });

  it('namespace and trust-domain patterns; a SPIFFE ID of our own trust domain means the same as its short name', () => {
    const ns = compiled(['spiffe://other.example/ns/x/*']);
    expect(ns.evaluate(from('other.example', 'x', 'any')).allowed).toBe(true);
    expect(ns.evaluate(from('other.example', 'xx', 'any')).allowed).toBe(false);
    const td = compiled(['spiffe://other.example/*']);
    expect(td.evaluate(from('other.example', 'a', 'b')).allowed).toBe(true);
    expect(td.evaluate(from(TD, 'a', 'b')).allowed).toBe(false);
    const own = compiled([`spiffe://${TD}/ns/shop/sa/orders`]);
    expect(own.evaluate(from(TD, 'shop', 'orders')).allowed).toBe(true);
    expect(own.evaluate(from('other.example', 'shop', 'orders')).allowed).toBe(false);
  });

  it('a deny rule naming a federated caller beats an allow of its whole trust domain', () => {
    const p = compiled(['spiffe://other.example/*'], `    - action: deny\n      from: ["spiffe://other.example/ns/x/sa/bad"]\n`);
    expect(p.evaluate(from('other.example', 'x', 'good')).allowed).toBe(true);
    expect(p.evaluate(from('other.example', 'x', 'bad'))).toMatchObject({ allowed: false, rule: 1 });
  });

  it('refuses malformed SPIFFE entries with file, line and column', () => {
    const bad = ['spiffe://Other.example/*', 'spiffe://other.example/ns/x', 'spiffe://other.example/ns/X/*', 'spiffe://other.example/ns/x/sa/y/z', 'spiffe://other.example/ns/x/sa/*y', 'spiffe:///ns/x/*', 'spiffe://.example/*'];
    let issues: string[] = [];
    try {
      compiled(bad);
    } catch (err) {
      issues = configIssuesOf(err).map(formatConfigIssue);
    }
    expect(issues).toHaveLength(bad.length);
    issues.forEach((issue, i) => expect(issue).toMatch(new RegExp(`^p\\.yaml:8:\\d+: spec\\.rules\\[0\\]\\.from\\[${i}\\]: `)));
    expect(issues[0]).toContain('is not a trust domain');
    expect(issues[2]).toContain('namespace "X" is not a DNS label');
  });
});
