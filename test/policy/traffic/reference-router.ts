/**
 * A slow, obviously-correct reading of route matching and weighted choice, for the property tests:
 * no compilation, no caches, every condition re-read from the resource for every request.
 */
import type { RouteBackend, RouteRule, TrafficRoute } from '../../../policy/traffic/index.js';

export interface RefRequest {
  readonly method: string;
  readonly path: string | null;
  readonly headers: readonly (readonly [string, string])[];
  readonly query: readonly (readonly [string, string])[];
}

function ruleMatches(rule: RouteRule, req: RefRequest): boolean {
  const m = rule.match;
  if (m === undefined) return true;
  if (m.path !== undefined) {
    if (req.path === null) return false;
    if ('exact' in m.path && req.path !== m.path.exact) return false;
    if ('prefix' in m.path) {
      const segsP = m.path.prefix.split('/').filter((s) => s !== '');
      const segsR = req.path.split('/').filter((s) => s !== '');
      // Segment-wise: every segment of the prefix equals the request's at the same place.
      if (segsP.length > segsR.length || segsP.some((s, i) => segsR[i] !== s)) return false;
      if (m.path.prefix !== '/' && !(req.path === m.path.prefix || req.path.startsWith(`${m.path.prefix}/`))) return false;
    }
  }
  if (m.methods !== undefined && !m.methods.includes(req.method)) return false;
  for (const h of m.headers ?? []) {
    const values = req.headers.filter(([n]) => n === h.name).map(([, v]) => v);
    if ('present' in h && values.length === 0) return false;
    if ('exact' in h && !values.includes(h.exact)) return false;
    if ('regex' in h && !values.some((v) => new RegExp(`^(?:${h.regex})$`, 'u').test(v))) return false;
  }
  for (const q of m.query ?? []) {
    const values = req.query.filter(([n]) => n === q.name).map(([, v]) => v);
    if ('present' in q && values.length === 0) return false;
    if ('exact' in q && !values.includes(q.exact)) return false;
  }
  return true;
}

/** The label of the matching rule (`<route>/<name or index>`), or `default`. */
export function referenceRoute(routes: readonly TrafficRoute[], namespace: string, service: string, req: RefRequest): string {
  const route = routes.find((r) => r.metadata.namespace === namespace && r.spec.destination === service) ?? routes.find((r) => r.metadata.namespace === namespace && r.spec.destination === '*');
  if (route === undefined) return 'default';
  const i = route.spec.rules.findIndex((rule) => ruleMatches(rule, req));
  if (i < 0) return 'default';
  return `${route.metadata.name}/${route.spec.rules[i]?.name ?? String(i)}`;
}

/** Weighted choice by expanding every backend into `weight` slots and indexing the slot the draw lands in. */
export function referencePick(backends: readonly RouteBackend[], r: number, available: readonly boolean[]): number | undefined {
  const slots: number[] = [];
  backends.forEach((b, i) => {
    if (available[i] === true) for (let k = 0; k < b.weight; k++) slots.push(i);
  });
  if (slots.length === 0) return undefined;
  return slots[Math.floor(r * slots.length)];
}
