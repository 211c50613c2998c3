import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compilePolicy, validatePolicyObjects, type AuthorizationRequest, type PolicyRule, type TrafficPermission } from '../../policy/index.js';
import { referenceEvaluate } from './reference-evaluator.js';

const ROOT = 'trellis-system';
const TD = 'mesh.test';
// Few names, so that random policies and random requests actually meet.
const NAMESPACES = ['a', 'b', ROOT] as const;
const SERVICES = ['x', 'y', 'z'] as const;

const ns = fc.constantFrom(...NAMESPACES);
const svc = fc.constantFrom(...SERVICES);

const fromEntry = fc.oneof(
  fc.constant('*'),
  svc,
  fc.tuple(ns, svc).map(([n, s]) => `${n}/${s}`),
  ns.map((n) => `${n}/*`),
  // SPIFFE IDs and patterns, of this mesh's trust domain and of federated ones (and one that only shares a prefix).
  fc.tuple(fc.constantFrom(TD, 'other.test', 'mesh.tes'), ns, svc).map(([td, n, s]) => `spiffe://${td}/ns/${n}/sa/${s}`),
  fc.tuple(fc.constantFrom(TD, 'other.test'), ns).map(([td, n]) => `spiffe://${td}/ns/${n}/*`),
  fc.constantFrom(TD, 'other.test', 'mesh.tes').map((td) => `spiffe://${td}/*`),
  // Zone-qualified entries: a zone or a zone pattern, then namespace/service, namespace/* or */*.
  fc.tuple(fc.constantFrom('east', 'eu-west', 'eu-*', 'e*', 'west'), ns, svc).map(([z, n, s]) => `${z}/${n}/${s}`),
  fc.tuple(fc.constantFrom('east', 'eu-*'), ns).map(([z, n]) => `${z}/${n}/*`),
  fc.constantFrom('east', 'eu-*', 'w*').map((z) => `${z}/*/*`),
);

const http = fc.option(
  fc
    .record(
      { methods: fc.uniqueArray(fc.constantFrom('GET', 'POST', 'DELETE'), { minLength: 1, maxLength: 2 }), paths: fc.uniqueArray(fc.constantFrom('/p', '/p/*', '/q', '/', '/*'), { minLength: 1, maxLength: 3 }) },
      { requiredKeys: [] },
    )
    .filter((h) => h.methods !== undefined || h.paths !== undefined),
  { nil: undefined },
);

const grpc = fc.option(
  fc
    .record(
      { services: fc.uniqueArray(fc.constantFrom('p', 'q', 'pkg.S'), { minLength: 1, maxLength: 2 }), methods: fc.uniqueArray(fc.constantFrom('p/a', 'q/a', 'pkg.S/M', 'pkg.S/N'), { minLength: 1, maxLength: 3 }) },
      { requiredKeys: [] },
    )
    .filter((g) => g.services !== undefined || g.methods !== undefined),
  { nil: undefined },
);

const rule: fc.Arbitrary<PolicyRule> = fc
  .record({ action: fc.constantFrom('allow' as const, 'deny' as const), from: fc.array(fromEntry, { minLength: 1, maxLength: 3 }), http, grpc })
  .map(({ action, from, http: h, grpc: g }) => ({ action, from, ...(h === undefined ? {} : { http: h }), ...(g === undefined ? {} : { grpc: g }) }));

function destinationFor(namespace: string): fc.Arbitrary<string> {
  if (namespace === ROOT) return fc.oneof(fc.constant('*'), svc, ns.map((n) => `${n}/*`), fc.tuple(ns, svc).map(([n, s]) => `${n}/${s}`));
  return fc.oneof(fc.constant('*'), svc, svc.map((s) => `${namespace}/${s}`));
}

const onePolicy = ns.chain((namespace) =>
  fc.record({
    namespace: fc.constant(namespace),
    destination: destinationFor(namespace),
    mode: fc.constantFrom('enforce' as const, 'enforce' as const, 'dry-run' as const),
    rules: fc.array(rule, { minLength: 1, maxLength: 4 }),
  }),
);

const policies: fc.Arbitrary<TrafficPermission[]> = fc.array(onePolicy, { maxLength: 8 }).map((list) =>
  list.map((p, i) => ({
    apiVersion: 'trellis.dev/v1alpha1' as const,
    kind: 'TrafficPermission' as const,
    // Names in random order, so evaluation order is not simply the generation order.
    metadata: { name: `p${(i * 7) % 11}-${i}`, namespace: p.namespace },
    spec: { destination: p.destination, mode: p.mode, rules: p.rules },
  })),
);

const requests: fc.Arbitrary<AuthorizationRequest> = fc.record({
  source: fc.oneof(
    { weight: 4, arbitrary: fc.record({ trustDomain: fc.constant(TD), namespace: ns, service: svc }) },
    // Callers whose certificate proves a zone (the zone-free ones above are "zone unknown").
    { weight: 4, arbitrary: fc.record({ trustDomain: fc.constant(TD), namespace: ns, service: svc, zone: fc.constantFrom('east', 'eu-west', 'eu-north', 'west', 'e') }) },
    { weight: 1, arbitrary: fc.record({ trustDomain: fc.constantFrom('other.test', 'mesh.tes'), namespace: ns, service: svc }) },
    { weight: 1, arbitrary: fc.constant(null) },
  ),
  destination: fc.record({ namespace: ns, service: svc }),
  protocol: fc.constantFrom('tcp' as const, 'http' as const),
  http: fc.record({
    method: fc.constantFrom('GET', 'POST', 'DELETE', 'get'),
    path: fc.constantFrom('/p', '/p/', '/p/1', '/p/1/2', '/q', '/q/1', '/p/../q', '/%70', '//q', '/x?y=/p', 'bad', '/p%zz', '*', '/', '/p/a', '/q/a', '/pkg.S/M', '/pkg.S/N', '/pkg.S/M/', '/pkg.S//M', '/pkg.S/M?x=1', '/pkg.S/../pkg.S/M', '/pkg.%53/M'),
  }),
});

describe('compiled evaluator agrees with the reference evaluator', () => {
  it('for random policies and requests (decision, enforcement, deciding policy and rule)', () => {
    fc.assert(
      fc.property(policies, fc.array(requests, { minLength: 1, maxLength: 20 }), (ps, reqs) => {
        // Generated policies must be valid; this also exercises the wire validator.
        const valid = validatePolicyObjects(ps, 'generated', { rootNamespace: ROOT });
        const compiled = compilePolicy(valid, { trustDomain: TD, rootNamespace: ROOT });
        for (const req of reqs) {
          const actual = compiled.evaluate(req);
          const expected = referenceEvaluate(valid, { trustDomain: TD, rootNamespace: ROOT }, req);
          expect({ allowed: actual.allowed, enforced: actual.enforced, policy: actual.policy, rule: actual.rule }).toEqual(expected);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('deny always beats allow: adding an enforced deny for a caller never turns a denial into an allow', () => {
    fc.assert(
      fc.property(policies, requests, (ps, req) => {
        fc.pre(req.source !== null);
        const src = req.source as NonNullable<AuthorizationRequest['source']>;
        const guard: TrafficPermission = {
          apiVersion: 'trellis.dev/v1alpha1',
          kind: 'TrafficPermission',
          metadata: { name: 'guard', namespace: ROOT },
          // A short name means this trust domain only; a caller of another one is named by its full ID.
          spec: { destination: '*', mode: 'enforce', rules: [{ action: 'deny', from: [src.trustDomain !== undefined && src.trustDomain !== TD ? `spiffe://${src.trustDomain}/ns/${src.namespace}/sa/${src.service}` : `${src.namespace}/${src.service}`] }] },
        };
        const d = compilePolicy([...ps, guard], { trustDomain: TD, rootNamespace: ROOT }).evaluate(req);
        expect(d.allowed).toBe(false);
      }),
      { numRuns: 300 },
    );
  });
});
