/**
 * Zones in `from`: an entry without a zone means that caller in any zone (an unknown one included); one that
 * names a zone (`east/shop/orders`) or a zone pattern (`eu-*`) matches only a caller whose certificate proves
 * it (ca/zone.ts), and never a caller of a federated trust domain. Malformed entries are refused with file,
 * line and column, however the zone part is bent.
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

function call(service: string, zone: string | undefined, trustDomain = TD, namespace = 'shop'): AuthorizationRequest {
  return { source: { trustDomain, namespace, service, ...(zone === undefined ? {} : { zone }) }, destination: { namespace: 'shop', service: 'payments' }, protocol: 'tcp' };
}

describe('zones in policy sources', () => {
  it('a name without a zone means that service in every zone, unknown included', () => {
    const p = compiled(['orders']);
    for (const zone of ['east', 'west', undefined]) expect(p.evaluate(call('orders', zone)).allowed).toBe(true);
  });

  it('a zone-qualified name matches only a caller that proves that zone', () => {
    const p = compiled(['east/shop/orders']);
    expect(p.evaluate(call('orders', 'east'))).toMatchObject({ allowed: true, policy: 'shop/p', rule: 0 });
    for (const req of [call('orders', 'west'), call('orders', undefined), call('orders', 'east-2'), call('orders', 'eas'), call('billing', 'east'), call('orders', 'east', TD, 'other')]) {
      expect(p.evaluate(req).allowed).toBe(false);
    }
    // A federated caller whose certificate proves a zone of that name is still not "orders of this mesh".
    expect(p.evaluate(call('orders', 'east', 'other.example')).allowed).toBe(false);
  });

  it('zone patterns, namespace and mesh wildcards inside a zone', () => {
    const pattern = compiled(['eu-*/shop/orders']);
    expect(pattern.evaluate(call('orders', 'eu-west')).allowed).toBe(true);
    expect(pattern.evaluate(call('orders', 'eu-')).allowed).toBe(true);
    for (const zone of ['us-east', 'eu', 'xeu-west', undefined]) expect(pattern.evaluate(call('orders', zone)).allowed).toBe(false);
    const ns = compiled(['east/shop/*']);
    expect(ns.evaluate(call('anything', 'east')).allowed).toBe(true);
    expect(ns.evaluate(call('anything', 'east', TD, 'other')).allowed).toBe(false);
    const all = compiled(['east/*/*']);
    expect(all.evaluate(call('x', 'east', TD, 'any')).allowed).toBe(true);
    expect(all.evaluate(call('x', 'west', TD, 'any')).allowed).toBe(false);
  });

  it('a deny naming a zone beats an allow of every zone; other zones stay allowed', () => {
    const p = compiled(['orders'], '    - action: deny\n      from: ["west/shop/orders"]\n');
    expect(p.evaluate(call('orders', 'east')).allowed).toBe(true);
    expect(p.evaluate(call('orders', undefined)).allowed).toBe(true);
    expect(p.evaluate(call('orders', 'west'))).toMatchObject({ allowed: false, rule: 1 });
  });

  it('tells the control plane an allow naming a zone might apply (the zone of a caller is not known there)', () => {
    expect(compiled(['east/shop/orders']).couldAllow({ trustDomain: TD, namespace: 'shop', service: 'orders' }, { namespace: 'shop', service: 'payments' })).toBe(true);
    expect(compiled(['east/shop/orders']).couldAllow({ trustDomain: TD, namespace: 'shop', service: 'billing' }, { namespace: 'shop', service: 'payments' })).toBe(false);
  });

  it('refuses every bent zone entry with file, line and column', () => {
    const bad = [
      '*/shop/orders', // a "*" zone says nothing an entry without a zone does not
      'east/*/orders', // a "*" namespace with a named service
      'e*st/shop/orders', // "*" only at the end of a zone
      '*east/shop/orders',
      '**/shop/orders',
      'east/shop/orders/x', // one "/" too many
      'east//orders',
      '/shop/orders',
      'east/shop/',
      'East/shop/orders',
      'east/shop/Orders',
      'east/sh op/orders',
      'eu_west/shop/orders',
      `${'a'.repeat(64)}/shop/orders`,
      '-east/shop/orders',
      'east/shop/*x',
    ];
    let issues: string[] = [];
    try {
      compiled(bad);
    } catch (err) {
      issues = configIssuesOf(err).map(formatConfigIssue);
    }
    expect(issues).toHaveLength(bad.length);
    issues.forEach((issue, i) => expect(issue).toMatch(new RegExp(`^p\\.yaml:8:\\d+: spec\\.rules\\[0\\]\\.from\\[${i}\\]: `)));
    expect(issues[0]).toContain('write "shop/orders"');
    expect(issues[1]).toContain('a "*" namespace needs a "*" service');
    expect(issues[2]).toContain('zone "e*st" is not a zone name');
    expect(issues[5]).toContain('too many "/"');
  });
});
