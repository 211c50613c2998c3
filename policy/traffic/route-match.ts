/**
 * Route rules compiled for matching, and the weighted choice of a backend.
 *
 * A request matches a rule when every condition of its `match` holds (an absent `match` matches all):
 * the path, normalised as for policy (`normalizeRequestPath`), equal to `exact` or equal to / under
 * `prefix` segment-wise (`/api` matches `/api` and `/api/x`, never `/apix`); the method among `methods`;
 * every header condition (a repeated header matches when any of its values does); every query condition
 * on the decoded query parameters. Rules are tried in order; the first match wins.
 */
import { compileSafeRegex } from './safe-regex.js';
import type { RouteBackend, RouteMatch, RouteRule } from './types.js';

/** What route matching asks of a request; header names are lower-case. */
export interface TrafficRequest {
  readonly method: string;
  /** The normalised path (no query), or null when it could not be normalised: then only rules without a path condition match. */
  readonly path: string | null;
  /** Every value of the header `name` (lower-case), none when absent. */
  headerValues(name: string): readonly string[];
  /** The raw query string after "?", "" when none. */
  readonly query: string;
}

export type Matcher = (req: TrafficRequest, query: () => URLSearchParams) => boolean;

export function compileMatch(match: RouteMatch | undefined): Matcher {
  if (match === undefined) return () => true;
  const tests: Matcher[] = [];
  const path = match.path;
  if (path !== undefined) {
    if ('exact' in path) tests.push((req) => req.path === path.exact);
    else {
      const p = path.prefix;
      const under = p.endsWith('/') ? p : `${p}/`;
      tests.push((req) => req.path !== null && (req.path === p || req.path.startsWith(under)));
    }
  }
  if (match.methods !== undefined) {
    const methods = new Set(match.methods);
    tests.push((req) => methods.has(req.method));
  }
  for (const h of match.headers ?? []) {
    if ('present' in h) tests.push((req) => req.headerValues(h.name).length > 0);
    else if ('exact' in h) tests.push((req) => req.headerValues(h.name).includes(h.exact));
    else {
      const re = compileSafeRegex(h.regex);
      tests.push((req) => req.headerValues(h.name).some(re));
    }
  }
  for (const q of match.query ?? []) {
    if ('present' in q) tests.push((_req, query) => query().has(q.name));
    else tests.push((_req, query) => query().getAll(q.name).includes(q.exact));
  }
  return (req, query) => {
    for (const t of tests) if (!t(req, query)) return false;
    return true;
  };
}

/** Whether an endpoint's labels hold every pair of `selector`. */
export function labelsMatch(selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>> | undefined): boolean {
  for (const key in selector) {
    if (!Object.hasOwn(selector, key)) continue;
    if (labels === undefined || !Object.hasOwn(labels, key) || labels[key] !== selector[key]) return false;
  }
  return true;
}

/**
 * The backend for a draw `r` in [0, 1): each backend with weight w is chosen with probability
 * w / (sum of weights of backends that are `available`). Undefined when no available backend has weight.
 */
export function pickBackend(backends: readonly RouteBackend[], r: number, available: (b: RouteBackend, i: number) => boolean = () => true): number | undefined {
  let total = 0;
  for (let i = 0; i < backends.length; i++) if (available(backends[i] as RouteBackend, i)) total += (backends[i] as RouteBackend).weight;
  if (total === 0) return undefined;
  let point = r * total;
  let last: number | undefined;
  for (let i = 0; i < backends.length; i++) {
    const b = backends[i] as RouteBackend;
    if (b.weight === 0 || !available(b, i)) continue;
    last = i;
    if (point < b.weight) return i;
    point -= b.weight;
  }
  return last; // only reached through floating-point rounding at r close to 1
}

/** A compiled rule; `label` names it in metrics and `trellis explain` (`<route>/<rule name or index>`). */
export interface CompiledRule {
  readonly label: string;
  readonly rule: RouteRule;
  readonly matches: Matcher;
}

/** The rule used when no route names the destination, or none of its rules matches: every endpoint. */
export const DEFAULT_RULE: CompiledRule = Object.freeze({
  label: 'default',
  rule: Object.freeze({ backends: Object.freeze([Object.freeze({ labels: Object.freeze({}), weight: 1 })]) }),
  matches: () => true,
});
