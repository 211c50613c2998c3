import { describe, expect, it } from 'vitest';
import { configIssuesOf, formatConfigIssue } from '../../common/config-issues.js';
import { parsePolicyFiles, validatePolicyObjects, type TrafficPermission } from '../../policy/index.js';

const GOOD = `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: payments-callers, namespace: shop }
spec:
  destination: payments
  mode: enforce
  rules:
    - action: allow
      from: [orders, "billing/invoicer"]
      http: { methods: [POST], paths: ["/charge", "/refunds/*"] }
    - action: deny
      from: ["sandbox/*"]
`;

function errorsOf(files: { path: string; text: string }[], options = {}): string[] {
  try {
    parsePolicyFiles(files, options);
  } catch (err) {
    const issues = configIssuesOf(err);
    if (issues.length === 0) throw err;
    return issues.map(formatConfigIssue);
  }
  return [];
}

describe('policy validation', () => {
  it('parses the documented example into frozen, JSON-serialisable data with defaults filled in', () => {
    const [policy, ...rest] = parsePolicyFiles([{ path: 'p.yaml', text: GOOD }]);
    expect(rest).toEqual([]);
    expect(policy).toEqual({
      apiVersion: 'trellis.dev/v1alpha1',
      kind: 'TrafficPermission',
      metadata: { name: 'payments-callers', namespace: 'shop' },
      spec: {
        destination: 'payments',
        mode: 'enforce',
        rules: [
          { action: 'allow', from: ['orders', 'billing/invoicer'], http: { methods: ['POST'], paths: ['/charge', '/refunds/*'] } },
          { action: 'deny', from: ['sandbox/*'] },
        ],
      },
    });
    const p = policy as TrafficPermission;
    expect(Object.isFrozen(p) && Object.isFrozen(p.spec) && Object.isFrozen(p.spec.rules) && Object.isFrozen(p.spec.rules[0]?.from)).toBe(true);
    expect(JSON.parse(JSON.stringify(p))).toEqual(p);
    expect(validatePolicyObjects(JSON.parse(JSON.stringify([p])) as unknown[], 'snapshot')).toEqual([p]);
  });

  it('defaults mode to enforce and keeps labels and annotations', () => {
    const text = GOOD.replace('  mode: enforce\n', '').replace('namespace: shop }', 'namespace: shop, labels: { team: pay } }');
    const [p] = parsePolicyFiles([{ path: 'p.yaml', text }]);
    expect(p?.spec.mode).toBe('enforce');
    expect(p?.metadata.labels).toEqual({ team: 'pay' });
  });

  it('reports every error of every document and file at once, with file, line and column', () => {
    const bad = `apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: Payments_Callers, namespace: shop }
spec:
  destinaton: payments
  mode: audit
  rules:
    - action: permit
      from: []
    - action: allow
      from: ["a/b/c/d", "Orders", 7]
      http: { methods: [post, "BR EW"], paths: ["charge", "/a/*/b", "/x/../y", "/ok/*"] }
    - action: allow
      form: [orders]
`;
    const second = `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: p, namespace: shop }
spec: { destination: payments, rules: [{ action: allow, from: [orders], http: {} }] }
---
apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: p, namespace: shop }
spec: { destination: "other/payments", rules: [{ action: deny, from: ["*"] }] }
`;
    expect(errorsOf([{ path: 'bad.yaml', text: bad }, { path: 'two.yaml', text: second }])).toEqual([
      'bad.yaml:1:13: apiVersion: expected one of "trellis.dev/v1alpha1", got "trellis.dev/v1"',
      'bad.yaml:2:7: kind: expected one of "TrafficPermission", got "TrafficPolicy"',
      expect.stringMatching(/^bad\.yaml:3:19: metadata\.name: expected a DNS label .*got "Payments_Callers"$/),
      'bad.yaml:5:3: spec.destinaton: unknown field (did you mean "destination"?)',
      'bad.yaml:4:1: spec: missing required field "destination"',
      'bad.yaml:6:9: spec.mode: expected one of "enforce", "dry-run", got "audit"',
      'bad.yaml:8:15: spec.rules[0].action: expected one of "allow", "deny", got "permit"',
      'bad.yaml:9:13: spec.rules[0].from: must not be empty',
      'bad.yaml:11:14: spec.rules[1].from[0]: expected "ZONE/NAMESPACE/SERVICE", "ZONE/NAMESPACE/*" or "ZONE/*/*" (ZONE: a zone name (a DNS label) or a zone pattern "PREFIX*" (e.g. "eu-*")), got "a/b/c/d": too many "/"',
      expect.stringMatching(/^bad\.yaml:11:25: spec\.rules\[1\]\.from\[1\]: .*"Orders" is not a DNS label/),
      'bad.yaml:11:35: spec.rules[1].from[2]: expected a string, got the number 7',
      'bad.yaml:12:25: spec.rules[1].http.methods[0]: expected an uppercase HTTP method such as GET or POST, got "post" (methods are case-sensitive: write "POST")',
      'bad.yaml:12:31: spec.rules[1].http.methods[1]: expected an uppercase HTTP method such as GET or POST, got "BR EW"',
      'bad.yaml:12:49: spec.rules[1].http.paths[0]: expected a path starting with "/", got "charge"',
      'bad.yaml:12:59: spec.rules[1].http.paths[1]: "*" is only allowed as a trailing "/*" (a prefix), got "/a/*/b"',
      'bad.yaml:12:69: spec.rules[1].http.paths[2]: is not in normal form (requests are matched after normalisation), write "/y"',
      'bad.yaml:14:7: spec.rules[2].form: unknown field (did you mean "from"?)',
      'bad.yaml:13:7: spec.rules[2]: missing required field "from"',
      'two.yaml:4:79: spec.rules[0].http: expected "methods", "paths" or both (leave "http" out to match any request)',
      expect.stringMatching(/^two\.yaml:9:22: spec\.destination: names a service in namespace "other", but only policies in the root namespace "trellis-system"/),
      'two.yaml:8:19: metadata.name: duplicate policy "shop/p" (first defined at two.yaml:3:19)',
    ]);
  });

  it('rejects the whole set when one document is bad: nothing half-applies', () => {
    const other = GOOD.replace('payments-callers', 'other').replace('action: deny', 'action: nope');
    expect(() => parsePolicyFiles([{ path: 'a.yaml', text: GOOD }, { path: 'b.yaml', text: other }])).toThrow(/invalid policy: 1 error/);
  });

  it('accepts cross-namespace and mesh-wide destinations only in the root namespace (configurable)', () => {
    const doc = (ns: string, dest: string): string =>
      `apiVersion: trellis.dev/v1alpha1\nkind: TrafficPermission\nmetadata: { name: guard, namespace: ${ns} }\nspec: { destination: "${dest}", rules: [{ action: deny, from: ["sandbox/*"] }] }\n`;
    for (const dest of ['*', 'shop/*', 'shop/payments', 'payments']) {
      expect(errorsOf([{ path: 'r.yaml', text: doc('trellis-system', dest) }])).toEqual([]);
    }
    expect(errorsOf([{ path: 'r.yaml', text: doc('mesh-admin', 'shop/*') }], { rootNamespace: 'mesh-admin' })).toEqual([]);
    expect(errorsOf([{ path: 'r.yaml', text: doc('shop', 'shop/payments') }])).toEqual([]);
    expect(errorsOf([{ path: 'r.yaml', text: doc('shop', 'bank/*') }])).toHaveLength(1);
    expect(errorsOf([{ path: 'r.yaml', text: doc('trellis-system', '*/payments') }])).toHaveLength(1);
  });

  it('reports HTTP conditions aimed at a service whose ports are all TCP, when the context knows', () => {
    const portProtocols = (ns: string, svc: string): ReadonlySet<'tcp' | 'http'> | undefined =>
      ns === 'shop' && svc === 'payments' ? new Set(['tcp'] as const) : undefined;
    expect(errorsOf([{ path: 'p.yaml', text: GOOD }], { portProtocols })).toEqual([
      'p.yaml:10:13: spec.rules[0].http: HTTP conditions, but every port of shop/payments is TCP: this allow rule would never match',
    ]);
    const mixed = (): ReadonlySet<'tcp' | 'http'> => new Set(['tcp', 'http'] as const);
    expect(errorsOf([{ path: 'p.yaml', text: GOOD }], { portProtocols: mixed })).toEqual([]);
  });

  it('validates JSON off the wire with paths, and refuses non-objects', () => {
    let issues: string[] = [];
    try {
      validatePolicyObjects([{ apiVersion: 'trellis.dev/v1alpha1', kind: 'TrafficPermission', metadata: { name: 'a', namespace: 'shop' }, spec: { destination: 'x', rules: [{ action: 'allow', from: [1] }] } }, 'junk'], 'snapshot 12');
    } catch (err) {
      issues = configIssuesOf(err).map(formatConfigIssue);
    }
    expect(issues).toEqual(['snapshot 12: [0].spec.rules[0].from[0]: expected a string, got the number 1', 'snapshot 12: [1]: expected a mapping, got "junk"']);
  });

  it('reports YAML syntax errors with positions and skips empty documents', () => {
    expect(errorsOf([{ path: 's.yaml', text: '---\n# nothing\n---\n' }])).toEqual([]);
    const errors = errorsOf([{ path: 's.yaml', text: 'kind: [\n' }]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^s\.yaml:\d+:\d+: YAML: /);
  });
});
