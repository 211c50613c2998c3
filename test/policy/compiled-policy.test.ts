import { describe, expect, it } from 'vitest';
import { compilePolicy, parsePolicyFiles, type Decision } from '../../policy/index.js';
import { TD, policy, request } from './policy-fixtures.js';

const ROOT = 'trellis-system';

const POLICIES = [
  policy('shop', 'payments-callers', 'payments', [
    { action: 'allow', from: ['orders', 'billing/invoicer'], http: { methods: ['POST'], paths: ['/charge', '/refunds/*'] } },
    { action: 'deny', from: ['sandbox/*'] },
    { action: 'allow', from: ['ops/*'] },
    { action: 'deny', from: ['ops/intern'], http: { methods: ['DELETE'] } },
  ]),
  policy('shop', 'shop-internal', '*', [{ action: 'allow', from: ['shop/*'] }]),
  policy('shop', 'catalog-public', 'catalog', [{ action: 'allow', from: ['*'] }]),
  policy(ROOT, 'no-sandbox-anywhere', '*', [{ action: 'deny', from: ['sandbox/*'] }]),
  policy(ROOT, 'quarantine', 'shop/legacy', [{ action: 'deny', from: ['*'] }]),
  policy(ROOT, 'monitoring', 'shop/*', [{ action: 'allow', from: ['monitoring/prometheus'], http: { methods: ['GET'], paths: ['/metrics'] } }]),
  policy('shop', 'legacy-callers', 'legacy', [{ action: 'allow', from: ['orders'] }]),
  policy('bank', 'audit', 'ledger', [{ action: 'allow', from: ['shop/*'] }, { action: 'deny', from: ['shop/orders'] }], 'dry-run'),
  policy('bank', 'ledger-callers', 'ledger', [{ action: 'allow', from: ['shop/*'] }]),
];

const compiled = compilePolicy(POLICIES, { trustDomain: TD, rootNamespace: ROOT });

type Expect = Pick<Decision, 'allowed' | 'enforced' | 'policy' | 'rule'>;
const allow = (policyName: string, rule: number): Expect => ({ allowed: true, enforced: true, policy: policyName, rule });
const deny = (policyName: string | null, rule: number | null): Expect => ({ allowed: false, enforced: true, policy: policyName, rule });
const dryRunDeny = (policyName: string, rule: number): Expect => ({ allowed: true, enforced: false, policy: policyName, rule });

const CASES: [string, ReturnType<typeof request>, Expect][] = [
  ['an allowed HTTP call', request('shop/orders', 'shop/payments', { method: 'POST', path: '/charge' }), allow('shop/payments-callers', 0)],
  ['a namespace-wide allow also covers it (first rule in order reported)', request('shop/orders', 'shop/payments'), allow('shop/shop-internal', 0)],
  ['another namespace, listed', request('billing/invoicer', 'shop/payments', { method: 'POST', path: '/refunds/42' }), allow('shop/payments-callers', 0)],
  ['prefix matches below it', request('billing/invoicer', 'shop/payments', { method: 'POST', path: '/refunds/a/b?x=1' }), allow('shop/payments-callers', 0)],
  ['prefix does not match the bare directory', request('billing/invoicer', 'shop/payments', { method: 'POST', path: '/refunds' }), deny(null, null)],
  ['wrong method', request('billing/invoicer', 'shop/payments', { method: 'GET', path: '/charge' }), deny(null, null)],
  ['methods are case-sensitive', request('billing/invoicer', 'shop/payments', { method: 'post', path: '/charge' }), deny(null, null)],
  ['an allow with HTTP conditions never matches a TCP stream', request('billing/invoicer', 'shop/payments'), deny(null, null)],
  ['dot segments are resolved before matching', request('billing/invoicer', 'shop/payments', { method: 'POST', path: '/refunds/../admin' }), deny(null, null)],
  ['escaped path is decoded before matching', request('billing/invoicer', 'shop/payments', { method: 'POST', path: '/%63harge' }), allow('shop/payments-callers', 0)],
  ['a malformed path is treated like a stream', request('billing/invoicer', 'shop/payments', { method: 'POST', path: '/charge%zz' }), deny(null, null)],
  ['exact names, never substrings', request('billing/invoicer2', 'shop/payments', { method: 'POST', path: '/charge' }), deny(null, null)],
  ['a namespace prefix is not a namespace', request('bill/invoicer', 'shop/payments', { method: 'POST', path: '/charge' }), deny(null, null)],
  ['root deny beats every allow', request('sandbox/x', 'shop/catalog'), deny('trellis-system/no-sandbox-anywhere', 0)],
  ['root deny on a named service beats the owner\'s allow', request('shop/orders', 'shop/legacy'), deny('trellis-system/quarantine', 0)],
  ['"*" allows any workload of the mesh', request('elsewhere/thing', 'shop/catalog'), allow('shop/catalog-public', 0)],
  ['but not one from another trust domain', request('other.test:elsewhere/thing', 'shop/catalog'), deny(null, null)],
  ['nor a caller without an identity', request(null, 'shop/catalog'), deny(null, null)],
  ['no policy for the destination: deny', request('shop/orders', 'bank/vault'), deny(null, null)],
  ['root allow for monitoring reaches every shop service over HTTP', request('monitoring/prometheus', 'shop/legacy', { method: 'GET', path: '/metrics' }), deny('trellis-system/quarantine', 0)],
  ['root allow for monitoring', request('monitoring/prometheus', 'shop/catalog', { method: 'GET', path: '/metrics' }), allow('trellis-system/monitoring', 0)],
  ['root allow for monitoring: other paths', request('monitoring/prometheus', 'shop/payments', { method: 'GET', path: '/admin' }), deny(null, null)],
  ['a deny with HTTP conditions denies only matching requests', request('ops/intern', 'shop/payments', { method: 'GET', path: '/x' }), allow('shop/payments-callers', 2)],
  ['a deny with HTTP conditions', request('ops/intern', 'shop/payments', { method: 'DELETE', path: '/x' }), deny('shop/payments-callers', 3)],
  ['a deny with HTTP conditions denies the whole TCP stream (fail closed)', request('ops/intern', 'shop/payments'), deny('shop/payments-callers', 3)],
  ['dry-run deny is reported, not enforced', request('shop/orders', 'bank/ledger'), dryRunDeny('bank/audit', 1)],
  ['dry-run allow grants nothing, the enforced allow decides', request('shop/cart', 'bank/ledger'), allow('bank/ledger-callers', 0)],
  ['a source namespace selector does not match the destination namespace', request('shop/orders', 'bank/other'), deny(null, null)],
];

describe('compiled policy evaluation', () => {
  it.each(CASES)('%s', (_name, req, expected) => {
    const d = compiled.evaluate(req);
    expect({ allowed: d.allowed, enforced: d.enforced, policy: d.policy, rule: d.rule }).toEqual(expected);
    expect(d.reason.length).toBeGreaterThan(0);
    expect(Object.isFrozen(d)).toBe(true);
  });

  it('explains its decisions in the reason', () => {
    expect(compiled.evaluate(request('sandbox/x', 'shop/catalog')).reason).toBe('denied by rule 0 of policy trellis-system/no-sandbox-anywhere');
    expect(compiled.evaluate(request('shop/orders', 'bank/ledger')).reason).toContain('dry-run policy bank/audit would deny');
    expect(compiled.evaluate(request(null, 'shop/catalog')).reason).toContain('no mesh identity');
    expect(compiled.evaluate(request('x.test:a/b', 'shop/catalog')).reason).toContain('trust domain');
  });

  it('uses the configured root namespace: elsewhere, "*" stays within the policy\'s namespace', () => {
    const p = [policy('mesh-admin', 'deny-sandbox', '*', [{ action: 'deny', from: ['sandbox/*'] }]), policy('shop', 'all', '*', [{ action: 'allow', from: ['*'] }])];
    const withRoot = compilePolicy(p, { trustDomain: TD, rootNamespace: 'mesh-admin' });
    expect(withRoot.evaluate(request('sandbox/a', 'shop/x')).allowed).toBe(false);
    const withoutRoot = compilePolicy(p, { trustDomain: TD, rootNamespace: 'trellis-system' });
    expect(withoutRoot.evaluate(request('sandbox/a', 'shop/x')).allowed).toBe(true);
    expect(withoutRoot.evaluate(request('sandbox/a', 'mesh-admin/x')).allowed).toBe(false);
  });

  it('is frozen, and refuses duplicates or a cross-namespace destination outside the root namespace', () => {
    expect(Object.isFrozen(compiled)).toBe(true);
    expect(() => compilePolicy([POLICIES[0]!, POLICIES[0]!], { trustDomain: TD, rootNamespace: ROOT })).toThrow(/duplicate policy "shop\/payments-callers"/);
    const cross = policy('shop', 'x', 'bank/*', [{ action: 'deny', from: ['*'] }]);
    expect(() => compilePolicy([cross], { trustDomain: TD, rootNamespace: ROOT })).toThrow(/only policies in the root namespace/);
  });

  it('evaluates policies parsed from YAML the same way', () => {
    const text = `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: payments-callers, namespace: shop }
spec:
  destination: payments
  rules:
    - { action: allow, from: [orders] }
`;
    const c = compilePolicy(parsePolicyFiles([{ path: 'p.yaml', text }]), { trustDomain: TD, rootNamespace: ROOT });
    expect(c.evaluate(request('shop/orders', 'shop/payments')).allowed).toBe(true);
    expect(c.evaluate(request('shop/order', 'shop/payments')).allowed).toBe(false);
  });
});
