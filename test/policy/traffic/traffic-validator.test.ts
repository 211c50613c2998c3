import { describe, expect, it } from 'vitest';
import { configIssuesOf, formatConfigIssue } from '../../../common/config-issues.js';
import { DEFAULT_RETRY, DEFAULT_TIMEOUTS, parseTrafficFiles, validateTrafficObjects, type TrafficRoute } from '../../../policy/traffic/index.js';

const ROUTE = `apiVersion: trellis.dev/v1alpha1
kind: TrafficRoute
metadata: { name: payments-canary, namespace: shop }
spec:
  destination: payments
  rules:
    - name: beta
      match:
        headers: [{ name: x-beta, exact: "1" }]
      backends: [{ labels: { version: v2 } }]
    - name: api
      match:
        path: { prefix: /api }
        methods: [GET, POST]
        query: [{ name: debug, present: true }]
      backends:
        - { labels: { version: v1 }, weight: 90 }
        - { labels: { version: v2 }, weight: 10 }
      requestHeaders: { set: { x-canary: "yes" }, remove: [x-internal] }
      mirror: { labels: { version: v3 }, percent: 5 }
`;

function errorsOf(text: string): string[] {
  try {
    parseTrafficFiles([{ path: 't.yaml', text }]);
  } catch (err) {
    const issues = configIssuesOf(err);
    if (issues.length === 0) throw err;
    return issues.map(formatConfigIssue);
  }
  return [];
}

const head = (kind: string, spec: string): string => `apiVersion: trellis.dev/v1alpha1\nkind: ${kind}\nmetadata: { name: p, namespace: shop }\nspec:\n  destination: payments\n${spec}`;

describe('traffic resource validation', () => {
  it('parses a TrafficRoute into frozen JSON data that validates again as objects', () => {
    const [route] = parseTrafficFiles([{ path: 'r.yaml', text: ROUTE }]) as [TrafficRoute];
    expect(route.spec.rules[1]).toEqual({
      name: 'api',
      match: { path: { prefix: '/api' }, methods: ['GET', 'POST'], query: [{ name: 'debug', present: true }] },
      backends: [{ labels: { version: 'v1' }, weight: 90 }, { labels: { version: 'v2' }, weight: 10 }],
      requestHeaders: { set: { 'x-canary': 'yes' }, remove: ['x-internal'] },
      mirror: { labels: { version: 'v3' }, percent: 5 },
    });
    expect(Object.isFrozen(route.spec.rules[1]?.backends)).toBe(true);
    expect(validateTrafficObjects(JSON.parse(JSON.stringify([route])) as unknown[], 'snapshot')).toEqual([route]);
  });

  it('fills day-one defaults into the other kinds and skips documents of other kinds', () => {
    const text = `${head('RetryPolicy', '  attempts: 4\n  retryOn: [5xx]\n')}---\n${head('TimeoutPolicy', '  request: 2s\n')}---\napiVersion: trellis.dev/v1alpha1\nkind: TrafficPermission\nmetadata: { name: x, namespace: shop }\nspec: {}\n`;
    const [retry, timeouts, ...rest] = parseTrafficFiles([{ path: 'r.yaml', text }]);
    expect(rest).toEqual([]);
    expect(retry?.spec).toEqual({ ...DEFAULT_RETRY, destination: 'payments', attempts: 4, retryOn: ['5xx'] });
    expect(timeouts?.spec).toEqual({ ...DEFAULT_TIMEOUTS, destination: 'payments', requestMs: 2000 });
  });

  it.each([
    ['unknown kind field', head('RetryPolicy', '  atempts: 3\n'), 't.yaml:6:3: spec.atempts: unknown field (did you mean "attempts"?)'],
    ['attempts out of range', head('RetryPolicy', '  attempts: 99\n'), 't.yaml:6:13: spec.attempts: expected an integer from 1 to 10, got 99'],
    ['bad duration', head('TimeoutPolicy', '  request: soon\n'), 't.yaml:6:12: spec.request: "soon" is not a duration'],
    ['perTry longer than request', head('TimeoutPolicy', '  request: 1s\n  perTry: 2s\n'), 't.yaml:7:11: spec.perTry: must not be longer than "request"'],
    ['unknown retry condition', head('RetryPolicy', '  retryOn: [5XX]\n'), 't.yaml:6:13: spec.retryOn[0]: expected one of'],
    ['weights add to zero', head('TrafficRoute', '  rules:\n    - backends: [{ weight: 0 }]\n'), 't.yaml:7:17: spec.rules[0].backends: the weights add up to 0'],
    ['exponential regex', head('TrafficRoute', '  rules:\n    - match: { headers: [{ name: x-a, regex: "(a+)+$" }] }\n      backends: [{}]\n'), 'regex a group holding a quantifier'],
    ['back-reference', head('TrafficRoute', '  rules:\n    - match: { headers: [{ name: x-a, regex: "(a)\\\\1" }] }\n      backends: [{}]\n'), 'back-references are not allowed'],
    ['two header kinds', head('TrafficRoute', '  rules:\n    - match: { headers: [{ name: x-a, exact: "1", present: true }] }\n      backends: [{}]\n'), 'expected exactly one of "exact", "present" or "regex"'],
    ['edit of a mesh header', head('TrafficRoute', '  rules:\n    - backends: [{}]\n      requestHeaders: { remove: [x-forwarded-client-cert] }\n'), 'x-forwarded-client-cert is set by the mesh and cannot be edited'],
    ['edit of content-length', head('TrafficRoute', '  rules:\n    - backends: [{}]\n      requestHeaders: { set: { content-length: "0" } }\n'), 'content-length: content-length is set by the mesh'],
    ['non-normal path', head('TrafficRoute', '  rules:\n    - match: { path: { exact: /a/../b } }\n      backends: [{}]\n'), 'is not in normal form'],
    ['prefix with star', head('TrafficRoute', '  rules:\n    - match: { path: { prefix: /a/* } }\n      backends: [{}]\n'), 'write a prefix without "*"'],
    ['bad label value', head('TrafficRoute', '  rules:\n    - backends: [{ labels: { version: "v 2" } }]\n'), 'is not a Kubernetes label value'],
    ['mirror over 100%', head('TrafficRoute', '  rules:\n    - backends: [{}]\n      mirror: { labels: {}, percent: 150 }\n'), 'expected a number from 0 to 100, got 150'],
    ['destination in another namespace', head('RetryPolicy', '').replace('destination: payments', 'destination: other/payments'), 'spec.destination: expected a service of this namespace'],
    ['maxEjectionTime below base', head('OutlierDetection', '  baseEjectionTime: 1m\n  maxEjectionTime: 10s\n'), 'must not be less than "baseEjectionTime"'],
    ['negative breaker limit', head('CircuitBreaker', '  maxRequests: -1\n'), 'spec.maxRequests: expected an integer from 0'],
  ])('refuses %s with file:line:column', (_name, text, expected) => {
    const errors = errorsOf(text);
    expect(errors.join('\n')).toContain(expected);
  });

  it('rejects the whole set when one document is bad, and reports duplicates', () => {
    const text = `${head('RetryPolicy', '')}---\n${head('RetryPolicy', '')}---\n${head('CircuitBreaker', '  maxRetries: x\n')}`;
    const errors = errorsOf(text);
    expect(errors.some((e) => e.includes('duplicate RetryPolicy "shop/p"'))).toBe(true);
    expect(errors.some((e) => e.includes('spec.maxRetries: expected an integer'))).toBe(true);
  });

  it('refuses objects of an unknown kind when they are sent as traffic resources', () => {
    expect(() => validateTrafficObjects([{ apiVersion: 'trellis.dev/v1alpha1', kind: 'Nope', metadata: { name: 'a', namespace: 'b' }, spec: {} }], 'wire')).toThrow(/kind: expected one of/);
  });
});
