/**
 * The TrafficPermission CRD: its schema is structural (the API server refuses others), and sample
 * resources are validated against it with the small OpenAPI validator in openapi-schema.ts. Each sample is
 * also given to the policy library's own validator (the one that checks policy files), and the two must
 * agree, except for the rules a schema cannot state (listed), which the control plane still enforces.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parse, parseAllDocuments } from 'yaml';
import { validatePolicyObjects } from '../../policy/index.js';
import { structuralProblems, validateAgainstSchema, type JsonSchemaProps } from './openapi-schema.js';

const ROOT = resolve(import.meta.dirname, '../..');
const crd = parse(readFileSync(join(ROOT, 'deploy/kubernetes/base/crds/trafficpermissions.trellis.dev.yaml'), 'utf8')) as {
  spec: { group: string; names: { kind: string; plural: string }; versions: { name: string; served: boolean; storage: boolean; schema: { openAPIV3Schema: JsonSchemaProps } }[] };
};
const version = crd.spec.versions.find((v) => v.storage)!;
const schema = version.schema.openAPIV3Schema;

function policyAccepts(object: unknown): boolean {
  try {
    validatePolicyObjects([object], 'test');
    return true;
  } catch {
    return false;
  }
}

function tp(spec: Record<string, unknown>, name = 'sample', namespace = 'shop'): Record<string, unknown> {
  return { apiVersion: `${crd.spec.group}/${version.name}`, kind: crd.spec.names.kind, metadata: { name, namespace }, spec };
}

describe('the CRD', () => {
  it('serves and stores trellis.dev/v1alpha1 TrafficPermission, the policy format of policy/', () => {
    expect(`${crd.spec.group}/${version.name}`).toBe('trellis.dev/v1alpha1');
    expect(crd.spec.names).toMatchObject({ kind: 'TrafficPermission', plural: 'trafficpermissions' });
    expect(version.served).toBe(true);
  });

  it('has a structural schema', () => {
    expect(structuralProblems(schema)).toEqual([]);
  });

  it('the structural check finds what the API server refuses', () => {
    expect(structuralProblems({ type: 'object', properties: { a: {} } })).toEqual(['$.a: no type']);
    expect(structuralProblems({ type: 'array' })).toEqual(['$: array without items']);
    expect(structuralProblems({ type: 'string', enum: ['a'], default: 'b' })).toHaveLength(1);
  });
});

describe('sample TrafficPermissions', () => {
  it('of the kind demo validate against the schema and the policy validator', () => {
    const docs = parseAllDocuments(readFileSync(join(ROOT, 'deploy/kind/samples/base/policy.yaml'), 'utf8')).map((d) => d.toJS() as unknown);
    expect(docs).toHaveLength(2);
    for (const doc of docs) {
      expect(validateAgainstSchema(schema, doc)).toEqual([]);
      expect(policyAccepts(doc)).toBe(true);
    }
  });

  const valid: [string, Record<string, unknown>][] = [
    ['any caller', { destination: 'orders', rules: [{ action: 'allow', from: ['*'] }] }],
    ['namespace wildcard, deny, dry-run', { destination: '*', mode: 'dry-run', rules: [{ action: 'deny', from: ['legacy/*'] }, { action: 'allow', from: ['web', 'ops/admin'] }] }],
    ['zone-qualified callers and zone patterns', { destination: 'orders', rules: [{ action: 'allow', from: ['east/shop/web', 'eu-*/shop/*', 'west/*/*'] }] }],
    ['callers of a federated trust domain', { destination: 'orders', rules: [{ action: 'allow', from: ['spiffe://other.example/ns/x/sa/y', 'spiffe://other.example/ns/x/*', 'spiffe://other.example/*'] }] }],
    ['HTTP methods and paths', { destination: 'payments', rules: [{ action: 'allow', from: ['orders'], http: { methods: ['POST', 'GET'], paths: ['/pay', '/v1/refunds/*', '/*'] } }] }],
  ];
  for (const [what, spec] of valid) {
    it(`accepts: ${what}`, () => {
      expect(validateAgainstSchema(schema, tp(spec))).toEqual([]);
      expect(policyAccepts(tp(spec))).toBe(true);
    });
  }

  const invalid: [string, Record<string, unknown>, RegExp][] = [
    ['no rules', { destination: 'orders', rules: [] }, /at least 1 items/],
    ['missing destination', { rules: [{ action: 'allow', from: ['a'] }] }, /"destination" is required/],
    ['unknown action', { destination: 'orders', rules: [{ action: 'permit', from: ['a'] }] }, /must be one of "allow", "deny"/],
    ['unknown mode', { destination: 'orders', mode: 'audit', rules: [{ action: 'allow', from: ['a'] }] }, /must be one of "enforce", "dry-run"/],
    ['empty from', { destination: 'orders', rules: [{ action: 'allow', from: [] }] }, /at least 1 items/],
    ['uppercase service', { destination: 'Orders', rules: [{ action: 'allow', from: ['a'] }] }, /does not match/],
    ['four-part caller', { destination: 'orders', rules: [{ action: 'allow', from: ['a/b/c/d'] }] }, /does not match/],
    ['a "*" zone', { destination: 'orders', rules: [{ action: 'allow', from: ['*/b/c'] }] }, /does not match/],
    ['"*" inside a zone', { destination: 'orders', rules: [{ action: 'allow', from: ['e*st/b/c'] }] }, /does not match/],
    ['a "*" namespace with a named service', { destination: 'orders', rules: [{ action: 'allow', from: ['east/*/c'] }] }, /does not match/],
    ['a SPIFFE ID with "sa/*"', { destination: 'orders', rules: [{ action: 'allow', from: ['spiffe://other.example/ns/x/sa/*'] }] }, /does not match/],
    ['lowercase method', { destination: 'orders', rules: [{ action: 'allow', from: ['a'], http: { methods: ['post'] } }] }, /does not match/],
    ['relative path', { destination: 'orders', rules: [{ action: 'allow', from: ['a'], http: { paths: ['pay'] } }] }, /does not match/],
    ['star inside a path', { destination: 'orders', rules: [{ action: 'allow', from: ['a'], http: { paths: ['/a*b'] } }] }, /does not match/],
    ['empty http', { destination: 'orders', rules: [{ action: 'allow', from: ['a'], http: {} }] }, /at least 1 fields/],
    ['a typo in a field name', { destination: 'orders', rules: [{ action: 'allow', form: ['a'] }] }, /unknown field/],
    ['from as a string', { destination: 'orders', rules: [{ action: 'allow', from: 'a' }] }, /must be of type array/],
  ];
  for (const [what, spec, message] of invalid) {
    it(`refuses: ${what}, as the policy validator does`, () => {
      const errors = validateAgainstSchema(schema, tp(spec));
      expect(errors.join('\n')).toMatch(message);
      expect(policyAccepts(tp(spec))).toBe(false);
    });
  }

  it('refuses a policy name that is not a DNS label', () => {
    expect(validateAgainstSchema(schema, tp({ destination: 'a', rules: [{ action: 'allow', from: ['b'] }] }, 'orders.v2')).join()).toMatch(/metadata.name/);
    expect(policyAccepts(tp({ destination: 'a', rules: [{ action: 'allow', from: ['b'] }] }, 'orders.v2'))).toBe(false);
  });

  it('leaves to the control plane what a schema cannot say (and the control plane refuses it)', () => {
    // Only the root namespace may name destinations in other namespaces.
    const crossNamespace = tp({ destination: 'billing/payments', rules: [{ action: 'allow', from: ['a'] }] });
    expect(validateAgainstSchema(schema, crossNamespace)).toEqual([]);
    expect(policyAccepts(crossNamespace)).toBe(false);
    expect(policyAccepts(tp({ destination: 'billing/payments', rules: [{ action: 'allow', from: ['a'] }] }, 'mesh-wide', 'trellis-system'))).toBe(true);
    // Paths must be in normal form.
    const unnormal = tp({ destination: 'a', rules: [{ action: 'allow', from: ['b'], http: { paths: ['/a/../b'] } }] });
    expect(validateAgainstSchema(schema, unnormal)).toEqual([]);
    expect(policyAccepts(unnormal)).toBe(false);
  });

  it('agrees with the policy validator on generated policies', () => {
    const label = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}[a-z0-9]$/);
    const caller = fc.oneof(label, fc.constant('*'), fc.tuple(label, label).map(([n, s]) => `${n}/${s}`), label.map((n) => `${n}/*`));
    const rule = fc.record(
      {
        action: fc.constantFrom('allow', 'deny'),
        from: fc.array(caller, { minLength: 1, maxLength: 4 }),
        http: fc.record({ methods: fc.array(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'), { minLength: 1, maxLength: 3 }) }),
      },
      { requiredKeys: ['action', 'from'] },
    );
    fc.assert(
      fc.property(fc.oneof(label, fc.constant('*')), fc.constantFrom('enforce', 'dry-run'), fc.array(rule, { minLength: 1, maxLength: 4 }), (destination, mode, rules) => {
        const object = tp({ destination, mode, rules });
        expect(validateAgainstSchema(schema, object)).toEqual([]);
        expect(policyAccepts(object)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});
