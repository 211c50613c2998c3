/**
 * The spec of a `TrafficRoute`: ordered rules, each with its match, weighted backends, header edits and
 * mirror. Reports every problem at its node; returns undefined when the spec has any.
 */
import type { ConfigNode } from '../../common/config-node.js';
import { METHOD_PATTERN, pathPatternProblem } from '../http-match.js';
import { readLabels } from './spec-readers.js';
import { unsafeRegexReason } from './safe-regex.js';
import { TRAFFIC_LIMITS, type HeaderEdits, type HeaderMatch, type PathMatch, type QueryMatch, type RouteBackend, type RouteMatch, type RouteRule } from './types.js';

/** Lower-case header field names (RFC 9110 tokens). */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]{1,128}$/;
const HEADER_VALUE_MAX = 1024;
/** Header edits may not touch framing, routing or the mesh's own fields (the rules in proxy/http/header-rules.ts). */
const PROTECTED_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'upgrade', 'te', 'trailer', 'keep-alive', 'proxy-connection', 'x-forwarded-client-cert', 'x-request-id']);
const RULE_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function validateRouteRules(node: ConfigNode): RouteRule[] | undefined {
  const rules: RouteRule[] = [];
  const items = node.list({ minItems: 1, maxItems: TRAFFIC_LIMITS.rules });
  if (items === undefined) return undefined;
  let ok = true;
  const names = new Set<string>();
  for (const item of items) {
    const rule = validateRule(item);
    if (rule === undefined) ok = false;
    else if (rule.name !== undefined && names.has(rule.name)) {
      item.report(`duplicate rule name "${rule.name}"`);
      ok = false;
    } else {
      if (rule.name !== undefined) names.add(rule.name);
      rules.push(rule);
    }
  }
  return ok ? rules : undefined;
}

function validateRule(node: ConfigNode): RouteRule | undefined {
  const rule = node.object({ required: ['backends'], optional: ['name', 'match', 'requestHeaders', 'mirror'] });
  if (rule === undefined) return undefined;
  const nameNode = rule.field('name');
  const name = nameNode?.string({ pattern: RULE_NAME, expected: 'a DNS label (lower-case letters, digits, "-")' });
  const matchNode = rule.field('match');
  const match = matchNode === undefined ? undefined : validateMatch(matchNode);
  const backends = validateBackends(rule.field('backends') as ConfigNode);
  const editsNode = rule.field('requestHeaders');
  const edits = editsNode === undefined ? undefined : validateEdits(editsNode);
  const mirrorNode = rule.field('mirror');
  const mirror = mirrorNode === undefined ? undefined : validateMirror(mirrorNode);
  if ((nameNode !== undefined && name === undefined) || (matchNode !== undefined && match === undefined) || backends === undefined) return undefined;
  if ((editsNode !== undefined && edits === undefined) || (mirrorNode !== undefined && mirror === undefined)) return undefined;
  return Object.freeze({
    ...(name === undefined ? {} : { name }),
    ...(match === undefined ? {} : { match }),
    backends,
    ...(edits === undefined ? {} : { requestHeaders: edits }),
    ...(mirror === undefined ? {} : { mirror }),
  });
}

/** A route `match` (also the gateway's route match, gateway/config-routes.ts). */
export function validateMatch(node: ConfigNode): RouteMatch | undefined {
  const m = node.object({ optional: ['path', 'methods', 'headers', 'query'] });
  if (m === undefined) return undefined;
  const before = { ok: true };
  const pathNode = m.field('path');
  const path = pathNode === undefined ? undefined : validatePath(pathNode);
  if (pathNode !== undefined && path === undefined) before.ok = false;
  const methods: string[] = [];
  const methodsNode = m.field('methods');
  for (const item of methodsNode?.list({ minItems: 1, maxItems: TRAFFIC_LIMITS.methods }) ?? []) {
    const method = item.string({ pattern: METHOD_PATTERN, expected: 'an upper-case HTTP method such as GET' });
    if (method === undefined) before.ok = false;
    else methods.push(method);
  }
  if (methodsNode !== undefined && methods.length === 0) before.ok = false;
  const headers = readNamed(m.field('headers'), TRAFFIC_LIMITS.headers, true) as HeaderMatch[] | undefined | false;
  const query = readNamed(m.field('query'), TRAFFIC_LIMITS.query, false) as QueryMatch[] | undefined | false;
  if (!before.ok || headers === false || query === false) return undefined;
  return Object.freeze({
    ...(path === undefined ? {} : { path }),
    ...(methods.length === 0 ? {} : { methods: Object.freeze(methods) }),
    ...(headers === undefined ? {} : { headers: Object.freeze(headers) }),
    ...(query === undefined ? {} : { query: Object.freeze(query) }),
  });
}

function validatePath(node: ConfigNode): PathMatch | undefined {
  const p = node.object({ optional: ['exact', 'prefix'] });
  if (p === undefined) return undefined;
  const exact = p.field('exact');
  const prefix = p.field('prefix');
  if ((exact === undefined) === (prefix === undefined)) return node.report('expected exactly one of "exact" or "prefix"');
  const which = (exact ?? prefix) as ConfigNode;
  const text = which.string({ maxLength: 1024 });
  if (text === undefined) return undefined;
  // Request paths are matched normalised, so a pattern must be in normal form too (the policy's rule).
  const problem = text.includes('*') ? 'write a prefix without "*": "/api" matches /api and everything under /api/' : pathPatternProblem(text);
  if (problem !== undefined) return which.report(problem);
  return Object.freeze(exact !== undefined ? { exact: text } : { prefix: text });
}

/** Header or query conditions: `name` with one of exact / present (/ regex for headers). False when invalid. */
function readNamed(node: ConfigNode | undefined, max: number, regexAllowed: boolean): (HeaderMatch | QueryMatch)[] | undefined | false {
  if (node === undefined) return undefined;
  const items = node.list({ minItems: 1, maxItems: max });
  if (items === undefined) return false;
  const out: (HeaderMatch | QueryMatch)[] = [];
  let ok = true;
  for (const item of items) {
    const h = item.object({ required: ['name'], optional: regexAllowed ? ['exact', 'present', 'regex'] : ['exact', 'present'] });
    if (h === undefined) {
      ok = false;
      continue;
    }
    const name = regexAllowed ? h.field('name')?.string({ pattern: HEADER_NAME, expected: 'a lower-case header name' }) : h.field('name')?.string({ maxLength: 128 });
    const kinds = ['exact', 'present', 'regex'].filter((k) => h.has(k));
    if (kinds.length !== 1) {
      item.report(`expected exactly one of ${regexAllowed ? '"exact", "present" or "regex"' : '"exact" or "present"'}`);
      ok = false;
      continue;
    }
    const kind = kinds[0] as 'exact' | 'present' | 'regex';
    const value = h.field(kind) as ConfigNode;
    if (kind === 'present') {
      if (value.boolean() !== true) {
        value.report('expected true (leave the condition out to match regardless)');
        ok = false;
      } else if (name !== undefined) out.push(Object.freeze({ name, present: true as const }));
      continue;
    }
    const text = value.string({ nonEmpty: kind === 'regex', maxLength: HEADER_VALUE_MAX });
    const unsafe = kind === 'regex' && text !== undefined ? unsafeRegexReason(text) : undefined;
    if (unsafe !== undefined) value.report(`regex ${unsafe}`);
    if (name === undefined || text === undefined || unsafe !== undefined) ok = false;
    else out.push(Object.freeze(kind === 'exact' ? { name, exact: text } : { name, regex: text }));
  }
  return ok ? out : false;
}

function validateBackends(node: ConfigNode): RouteBackend[] | undefined {
  const items = node.list({ minItems: 1, maxItems: TRAFFIC_LIMITS.backends });
  if (items === undefined) return undefined;
  const out: RouteBackend[] = [];
  let ok = true;
  let total = 0;
  for (const item of items) {
    const b = item.object({ optional: ['labels', 'weight'] });
    if (b === undefined) {
      ok = false;
      continue;
    }
    const labels = readLabels(b.field('labels'));
    const weightNode = b.field('weight');
    const weight = weightNode === undefined ? 1 : weightNode.integer({ min: 0, max: 1_000_000 });
    if (labels === undefined || weight === undefined) ok = false;
    else {
      total += weight;
      out.push(Object.freeze({ labels, weight }));
    }
  }
  if (ok && total === 0) return node.report('the weights add up to 0: at least one backend needs a weight above 0');
  return ok ? Object.freeze(out) as RouteBackend[] : undefined;
}

/** Request header edits (also the gateway's, gateway/config-routes.ts). */
export function validateEdits(node: ConfigNode): HeaderEdits | undefined {
  const e = node.object({ optional: ['set', 'remove'] });
  if (e === undefined) return undefined;
  let ok = true;
  const setNode = e.field('set');
  const set = setNode?.stringMap();
  if (setNode !== undefined && set === undefined) ok = false;
  for (const [name, value] of Object.entries(set ?? {})) {
    const problem = editProblem(name) ?? (/[^\t\x20-\x7e]/.test(value) || value.length > HEADER_VALUE_MAX ? 'the value must be at most 1024 visible ASCII characters' : undefined);
    if (problem !== undefined) ok = setNode?.report(`${name}: ${problem}`) ?? false;
  }
  const remove: string[] = [];
  for (const item of e.field('remove')?.list({ minItems: 1, maxItems: TRAFFIC_LIMITS.headers }) ?? []) {
    const name = item.string();
    const problem = name === undefined ? 'expected a header name' : editProblem(name);
    if (problem !== undefined) ok = item.report(problem) ?? false;
    else remove.push(name as string);
  }
  if (!ok) return undefined;
  return Object.freeze({ ...(set === undefined ? {} : { set: Object.freeze(set) }), ...(remove.length === 0 ? {} : { remove: Object.freeze(remove) }) });
}

function editProblem(name: string): string | undefined {
  if (!HEADER_NAME.test(name)) return `${JSON.stringify(name)} is not a lower-case header name`;
  if (PROTECTED_HEADERS.has(name) || name.startsWith('trellis-')) return `${name} is set by the mesh and cannot be edited`;
  return undefined;
}

function validateMirror(node: ConfigNode): RouteRule['mirror'] | undefined {
  const m = node.object({ required: ['labels', 'percent'] });
  if (m === undefined) return undefined;
  const labels = readLabels(m.field('labels'));
  const percent = m.field('percent')?.number({ min: 0, max: 100 });
  if (labels === undefined || percent === undefined) return undefined;
  return Object.freeze({ labels, percent });
}
