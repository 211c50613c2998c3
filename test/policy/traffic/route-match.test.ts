import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileTraffic, parseTrafficFiles, pickBackend, labelsMatch, unsafeRegexReason, validateTrafficObjects, type RouteRule, type TrafficRequest, type TrafficRoute } from '../../../policy/traffic/index.js';
import { referencePick, referenceRoute, type RefRequest } from './reference-router.js';

function request(r: RefRequest): TrafficRequest {
  return {
    method: r.method,
    path: r.path,
    headerValues: (name) => r.headers.filter(([n]) => n === name).map(([, v]) => v),
    query: r.query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&'),
  };
}

const ROUTES = parseTrafficFiles([
  {
    path: 'r.yaml',
    text: `apiVersion: trellis.dev/v1alpha1
kind: TrafficRoute
metadata: { name: canary, namespace: shop }
spec:
  destination: payments
  rules:
    - name: beta
      match: { headers: [{ name: x-beta, exact: "1" }] }
      backends: [{ labels: { version: v2 } }]
    - name: users
      match: { path: { prefix: /users }, methods: [GET] }
      backends: [{ labels: { version: v1 }, weight: 95 }, { labels: { version: v2 }, weight: 5 }]
    - name: agent
      match: { headers: [{ name: user-agent, regex: "curl/[0-9.]+" }], query: [{ name: v, exact: "2" }] }
      backends: [{ labels: { version: v2 } }]
---
apiVersion: trellis.dev/v1alpha1
kind: TrafficRoute
metadata: { name: all, namespace: shop }
spec:
  destination: "*"
  rules:
    - backends: [{ labels: { version: stable } }]
`,
  },
]) as TrafficRoute[];

describe('route rule matching (table)', () => {
  const table = compileTraffic(ROUTES);
  it.each<[string, string, RefRequest, string]>([
    ['header exact', 'payments', { method: 'POST', path: '/x', headers: [['x-beta', '1']], query: [] }, 'canary/beta'],
    ['header other value', 'payments', { method: 'POST', path: '/x', headers: [['x-beta', '2']], query: [] }, 'default'],
    ['repeated header, one value matches', 'payments', { method: 'GET', path: '/', headers: [['x-beta', '0'], ['x-beta', '1']], query: [] }, 'canary/beta'],
    ['prefix itself', 'payments', { method: 'GET', path: '/users', headers: [], query: [] }, 'canary/users'],
    ['under the prefix', 'payments', { method: 'GET', path: '/users/7', headers: [], query: [] }, 'canary/users'],
    ['not a segment prefix', 'payments', { method: 'GET', path: '/usersx', headers: [], query: [] }, 'default'],
    ['method not listed', 'payments', { method: 'DELETE', path: '/users/7', headers: [], query: [] }, 'default'],
    ['unnormalisable path never matches a path rule', 'payments', { method: 'GET', path: null, headers: [], query: [] }, 'default'],
    ['regex and query', 'payments', { method: 'GET', path: '/', headers: [['user-agent', 'curl/8.5.0']], query: [['v', '2']] }, 'canary/agent'],
    ['regex anchored', 'payments', { method: 'GET', path: '/', headers: [['user-agent', 'xcurl/8']], query: [['v', '2']] }, 'default'],
    ['other service takes the namespace-wide route', 'orders', { method: 'GET', path: '/', headers: [], query: [] }, 'all/0'],
  ])('%s', (_name, service, req, expected) => {
    expect(table.route('shop', service, request(req)).label).toBe(expected);
    expect(referenceRoute(ROUTES, 'shop', service, req)).toBe(expected);
  });

  it('gives every endpoint to a destination without a route', () => {
    const rule = table.route('other', 'payments', request({ method: 'GET', path: '/', headers: [], query: [] }));
    expect(rule.label).toBe('default');
    expect(rule.rule.backends).toEqual([{ labels: {}, weight: 1 }]);
  });
});

// ---- property: the compiled router agrees with the slow reference ----

const name = fc.constantFrom('a', 'b', 'x-k');
const value = fc.constantFrom('1', '2', 'v1', 'abc');
const pathArb = fc.constantFrom('/', '/a', '/a/b', '/ab', '/a/b/c', '/b');
const match = fc.record(
  {
    path: fc.oneof(pathArb.map((p) => ({ exact: p })), pathArb.map((p) => ({ prefix: p }))),
    methods: fc.uniqueArray(fc.constantFrom('GET', 'POST', 'PUT'), { minLength: 1, maxLength: 2 }),
    headers: fc.array(fc.oneof(fc.record({ name, exact: value }), fc.record({ name, present: fc.constant(true as const) }), fc.record({ name, regex: fc.constantFrom('v[0-9]', 'a.c', '[12]') })), { minLength: 1, maxLength: 2 }),
    query: fc.array(fc.oneof(fc.record({ name, exact: value }), fc.record({ name, present: fc.constant(true as const) })), { minLength: 1, maxLength: 2 }),
  },
  { requiredKeys: [] },
);
const rule: fc.Arbitrary<RouteRule> = fc.record({ match: fc.option(match, { nil: undefined }), backends: fc.constant([{ labels: {}, weight: 1 }]) }).map((r) => (r.match === undefined ? { backends: r.backends } : r));
const routeArb = fc.record({ dest: fc.constantFrom('p', 'q', '*'), rules: fc.array(rule, { minLength: 1, maxLength: 4 }) });
const reqArb: fc.Arbitrary<RefRequest> = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'),
  path: fc.option(pathArb, { nil: null }),
  headers: fc.array(fc.tuple(name, value), { maxLength: 3 }),
  query: fc.array(fc.tuple(name, value), { maxLength: 3 }),
});

describe('route rule matching (property)', () => {
  it('matches exactly like the reference on random routes and requests', () => {
    fc.assert(
      fc.property(fc.uniqueArray(routeArb, { selector: (r) => r.dest, maxLength: 3 }), fc.array(reqArb, { minLength: 1, maxLength: 8 }), fc.constantFrom('p', 'q', 'r'), (specs, reqs, service) => {
        const objects = specs.map((s, i) => ({ apiVersion: 'trellis.dev/v1alpha1', kind: 'TrafficRoute', metadata: { name: `r${i}`, namespace: 'n' }, spec: { destination: s.dest, rules: s.rules } }));
        const routes = validateTrafficObjects(objects, 'prop') as TrafficRoute[];
        const table = compileTraffic(routes);
        for (const req of reqs) expect(table.route('n', service, request(req)).label).toBe(referenceRoute(routes, 'n', service, req));
      }),
      { numRuns: 300 },
    );
  });

  it('picks backends exactly like slot expansion, honouring availability', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ w: fc.integer({ min: 0, max: 20 }), up: fc.boolean() }), { minLength: 1, maxLength: 6 }), fc.integer({ min: 0, max: 9_999 }), (spec, n) => {
        const backends = spec.map((s) => ({ labels: {}, weight: s.w }));
        const r = n / 10_000;
        const available = spec.map((s) => s.up);
        // Slot expansion floors r × total; the cumulative walk compares r × total against running sums: same slot.
        expect(pickBackend(backends, r, (_b, i) => available[i] === true)).toBe(referencePick(backends, r, available));
      }),
      { numRuns: 500 },
    );
  });
});

describe('labels and safe regexes', () => {
  it('matches label selectors as subsets', () => {
    expect(labelsMatch({}, undefined)).toBe(true);
    expect(labelsMatch({ version: 'v2' }, { version: 'v2', zone: 'a' })).toBe(true);
    expect(labelsMatch({ version: 'v2' }, { version: 'v1' })).toBe(false);
    expect(labelsMatch({ version: 'v2' }, undefined)).toBe(false);
    expect(labelsMatch({ toString: 'x' }, {})).toBe(false);
  });

  it.each([
    ['v[0-9]+', undefined],
    ['(?:ab)+', undefined],
    ['(?:a|b)c', undefined],
    ['(a+)+$', 'may not be repeated'],
    ['(a|aa)*', 'may not be repeated'],
    ['((a*)b)*', 'may not be repeated'],
    ['(?=a)a', 'look-ahead'],
    ['(a)\\1', 'back-references'],
    ['[', 'not a valid regular expression'],
    ['a'.repeat(300), 'at most 256'],
  ])('%s', (source, problem) => {
    const reason = unsafeRegexReason(source);
    if (problem === undefined) expect(reason).toBeUndefined();
    else expect(reason).toContain(problem);
  });
});
