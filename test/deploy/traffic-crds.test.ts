/**
 * The CRDs of the traffic kinds (deploy/kubernetes/base/crds/): structural schemas, served and stored as
 * trellis.dev/v1alpha1, installed by the kustomization and readable by the control plane's RBAC. Sample
 * resources go through the schema (openapi-schema.ts) and through the traffic validator the control plane
 * runs on them; the two agree on what a schema can state, and the validator alone refuses the rest.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { validateTrafficObjects } from '../../policy/traffic/index.js';
import { TRAFFIC_KIND_PLURALS } from '../../control/kubernetes/resource-sources.js';
import { structuralProblems, validateAgainstSchema, type JsonSchemaProps } from './openapi-schema.js';

const ROOT = resolve(import.meta.dirname, '../..');

interface Crd {
  spec: { group: string; names: { kind: string; plural: string }; versions: { name: string; served: boolean; storage: boolean; schema: { openAPIV3Schema: JsonSchemaProps } }[] };
}

function schemaOf(plural: string): { crd: Crd; schema: JsonSchemaProps } {
  const crd = parse(readFileSync(join(ROOT, `deploy/kubernetes/base/crds/${plural}.trellis.dev.yaml`), 'utf8')) as Crd;
  const version = crd.spec.versions.find((v) => v.storage);
  if (version === undefined) throw new Error(`${plural}: no storage version`);
  return { crd, schema: version.schema.openAPIV3Schema };
}

function validatorAccepts(object: unknown): boolean {
  try {
    validateTrafficObjects([object], 'test');
    return true;
  } catch {
    return false;
  }
}

const of = (kind: string, spec: Record<string, unknown>): Record<string, unknown> => ({ apiVersion: 'trellis.dev/v1alpha1', kind, metadata: { name: 'sample', namespace: 'shop' }, spec });

const VALID: Record<string, Record<string, unknown>[]> = {
  TrafficRoute: [
    { destination: 'payments', rules: [{ backends: [{ labels: { version: 'v1' }, weight: 95 }, { labels: { version: 'v2' }, weight: 5 }] }] },
    {
      destination: '*',
      rules: [
        { name: 'beta', match: { path: { prefix: '/api' }, methods: ['GET'], headers: [{ name: 'x-beta', exact: '1' }, { name: 'x-id', regex: '[a-z]{3}' }], query: [{ name: 'debug', present: true }] }, backends: [{ labels: { version: 'v2' } }], requestHeaders: { set: { 'x-cohort': 'beta' }, remove: ['x-old'] } },
        { backends: [{}], mirror: { labels: { version: 'v3' }, percent: 2.5 } },
      ],
    },
  ],
  RetryPolicy: [{ destination: 'payments', attempts: 3, perTryTimeout: '250ms', retryOn: ['gateway-error', 'retriable-status'], statuses: [409], grpcStatuses: ['unavailable'], backoff: { base: '10ms', max: '1s' }, nonIdempotent: true, budget: { ratio: 0.2, minPerSecond: 10, window: '10s' } }],
  TimeoutPolicy: [{ destination: 'payments', connect: '2s', request: '1m30s', perTry: '5s', idle: '1h' }],
  OutlierDetection: [{ destination: '*', consecutive5xx: 5, consecutiveGatewayErrors: 3, consecutiveConnectFailures: 2, successRate: { minimumHosts: 3, requestVolume: 50, stdevFactor: 1.9 }, interval: '10s', baseEjectionTime: '30s', maxEjectionTime: '5m', maxEjectedPercent: 50, panicThreshold: 30 }],
  CircuitBreaker: [{ destination: 'payments', maxConnections: 100, maxPendingRequests: 50, maxRequests: 200, maxRetries: 5 }],
  ZoneFailover: [
    { destination: 'payments', order: ['east', 'west', '*'], threshold: '50%', from: ['east'] },
    { destination: '*', order: ['*'] },
    { destination: 'payments', order: ['west'], threshold: '100%' },
    { destination: 'payments', order: ['west'], threshold: '0.5%' },
  ],
};

const INVALID: Record<string, [string, Record<string, unknown>, RegExp][]> = {
  TrafficRoute: [
    ['no rules', { destination: 'payments', rules: [] }, /at least 1 items/],
    ['another namespace', { destination: 'billing/invoicer', rules: [{ backends: [{}] }] }, /does not match/],
    ['negative weight', { destination: 'payments', rules: [{ backends: [{ weight: -1 }] }] }, /minimum|at least/],
    ['mirror over 100%', { destination: 'payments', rules: [{ backends: [{}], mirror: { labels: {}, percent: 150 } }] }, /maximum|at most/],
  ],
  RetryPolicy: [
    ['too many attempts', { destination: 'payments', attempts: 11 }, /maximum|at most/],
    ['unknown condition', { destination: 'payments', retryOn: ['sometimes'] }, /one of/],
    ['unknown gRPC status', { destination: 'payments', grpcStatuses: ['ok'] }, /one of/],
    ['not a duration', { destination: 'payments', perTryTimeout: 'soon' }, /does not match/],
  ],
  TimeoutPolicy: [['not a duration', { destination: 'payments', request: '15' }, /does not match/]],
  OutlierDetection: [['a percentage over 100', { destination: 'payments', maxEjectedPercent: 101 }, /maximum|at most/]],
  CircuitBreaker: [['a negative limit', { destination: 'payments', maxRequests: -1 }, /minimum|at least/]],
  ZoneFailover: [
    ['no order', { destination: 'payments' }, /"order" is required/],
    ['an empty order', { destination: 'payments', order: [] }, /at least 1 items/],
    ['a zone twice', { destination: 'payments', order: ['east', 'east'] }, /duplicate value "east"/],
    ['a zone that is no DNS label', { destination: 'payments', order: ['East'] }, /does not match/],
    ['"*" in from', { destination: 'payments', order: ['east'], from: ['*'] }, /does not match/],
    ['a threshold over 100%', { destination: 'payments', order: ['east'], threshold: '101%' }, /does not match/],
    ['a threshold as a number', { destination: 'payments', order: ['east'], threshold: 50 }, /must be of type string/],
  ],
};

for (const [kind, plural] of Object.entries(TRAFFIC_KIND_PLURALS)) {
  describe(`the ${kind} CRD`, () => {
    const { crd, schema } = schemaOf(plural);

    it('serves and stores trellis.dev/v1alpha1 with a structural schema', () => {
      expect(crd.spec.names).toMatchObject({ kind, plural });
      expect(crd.spec.versions.map((v) => `${crd.spec.group}/${v.name} served=${v.served}`)).toEqual(['trellis.dev/v1alpha1 served=true']);
      expect(structuralProblems(schema)).toEqual([]);
    });

    for (const spec of VALID[kind] ?? []) {
      it(`accepts ${JSON.stringify(spec).slice(0, 80)}`, () => {
        expect(validateAgainstSchema(schema, of(kind, spec))).toEqual([]);
        expect(validatorAccepts(of(kind, spec))).toBe(true);
      });
    }

    for (const [what, spec, message] of INVALID[kind] ?? []) {
      it(`refuses ${what} (schema and validator alike)`, () => {
        expect(validateAgainstSchema(schema, of(kind, spec)).join('\n')).toMatch(message);
        expect(validatorAccepts(of(kind, spec))).toBe(false);
      });
    }
  });
}

describe('installation', () => {
  it('the kustomization installs every CRD and the control plane may list and watch every kind', () => {
    const kustomization = readFileSync(join(ROOT, 'deploy/kubernetes/base/kustomization.yaml'), 'utf8');
    const rbac = readFileSync(join(ROOT, 'deploy/kubernetes/base/control-plane.yaml'), 'utf8');
    for (const plural of Object.values(TRAFFIC_KIND_PLURALS)) {
      expect(kustomization).toContain(`crds/${plural}.trellis.dev.yaml`);
      expect(rbac).toMatch(new RegExp(`resources: \\[[^\\]]*"${plural}"`));
    }
  });

  it('the validator alone refuses what no schema states: two ZoneFailovers for the same callers of one destination', () => {
    const { schema } = schemaOf('zonefailovers');
    const a = { ...of('ZoneFailover', { destination: 'payments', order: ['east'] }), metadata: { name: 'a', namespace: 'shop' } };
    const b = { ...of('ZoneFailover', { destination: 'payments', order: ['west'], from: ['north'] }), metadata: { name: 'b', namespace: 'shop' } };
    const c = { ...of('ZoneFailover', { destination: 'payments', order: ['west'], from: ['north', 'south'] }), metadata: { name: 'c', namespace: 'shop' } };
    for (const r of [a, b, c]) expect(validateAgainstSchema(schema, r)).toEqual([]);
    expect(validateTrafficObjects([a, b], 'test')).toHaveLength(2);
    expect(() => validateTrafficObjects([a, b, c], 'test')).toThrow(/ZoneFailover shop\/c conflicts with ZoneFailover shop\/b: .* for callers in zone north/);
  });

  it('the validator alone refuses what no schema states: a backtracking header regex', () => {
    const { schema } = schemaOf('trafficroutes');
    const redos = of('TrafficRoute', { destination: 'payments', rules: [{ match: { headers: [{ name: 'x', regex: '(a+)+$' }] }, backends: [{}] }] });
    expect(validateAgainstSchema(schema, redos)).toEqual([]);
    expect(validatorAccepts(redos)).toBe(false);
  });
});
