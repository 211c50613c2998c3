/**
 * The JSON the web UI reads from a zone control plane's admin port (`/ui/api/*`), each a pure function of
 * the control plane's state: the zone and its link to the global, services with their instances, the
 * call graph of the last minutes (golden-window.ts), recent denials, agents on stale config or with
 * certificates near expiry, the policy matrix, and `explain` (the proxy's own evaluator, as `trellis
 * explain` runs it). These are routes of the bounded admin server; nothing here writes.
 */
import type { IncomingMessage } from 'node:http';
import { compilePolicy, type AuthorizationRequest, type TrafficPermission } from '../../policy/index.js';
import { jsonReply, type AdminReply, type AdminRoute } from '../../common/admin-http.js';
import { policyRevision } from '../policy-source.js';
import type { ServiceRegistry } from '../registry.js';
import { WINDOW_SLOT_MS, WINDOW_SLOTS, type GoldenWindow } from './golden-window.js';

/** A certificate with less than this left is "near expiry": renewal (at half of 24 h) has been failing for hours. */
export const CERT_WARNING_MS = 6 * 3600_000;
/** Services in the policy matrix at most (its cells grow as the square). */
export const MAX_MATRIX_SERVICES = 60;
const NAME = /^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$/;

export interface UiApiSources {
  readonly zone: string;
  readonly trustDomain: string;
  readonly rootNamespace: string;
  readonly mode: string;
  readonly registry: ServiceRegistry;
  readonly window: GoldenWindow;
  readonly policies: () => readonly TrafficPermission[];
  readonly configVersion: () => number;
  readonly agentsConnected: () => number;
  /** The link to the global, when this zone has one. */
  readonly globalLink?: () => unknown;
  readonly now?: () => number;
}

function query(req: IncomingMessage): URLSearchParams {
  return new URL(req.url ?? '/', 'http://admin').searchParams;
}

function windowOf(req: IncomingMessage): number {
  const minutes = Number(query(req).get('minutes') ?? '5');
  return Number.isInteger(minutes) && minutes >= 1 && minutes <= WINDOW_SLOTS ? minutes * WINDOW_SLOT_MS : 5 * WINDOW_SLOT_MS;
}

function servicesView(s: UiApiSources): unknown {
  const byService = new Map<string, { namespace: string; service: string; instances: unknown[]; healthy: number }>();
  for (const e of s.registry.entries()) {
    const key = `${e.namespace}/${e.service}`;
    let svc = byService.get(key);
    if (svc === undefined) byService.set(key, (svc = { namespace: e.namespace, service: e.service, instances: [], healthy: 0 }));
    if (e.healthy) svc.healthy++;
    svc.instances.push({ instanceId: e.instanceId, zone: e.zone, address: `${e.address}:${e.tunnelPort}`, healthy: e.healthy, agent: e.agent, version: s.registry.get(e.instanceId)?.labels?.version ?? null });
  }
  return { services: [...byService.values()].sort((a, b) => `${a.namespace}/${a.service}`.localeCompare(`${b.namespace}/${b.service}`)) };
}

/** Agents whose config is stale (they say so, or their policy revision is not the one in force) or whose certificate is near expiry. */
function agentsView(s: UiApiSources): unknown {
  const now = (s.now ?? Date.now)();
  const policies = s.policies();
  const revisions = new Map<string, string>();
  const expected = (ns: string): string => {
    let r = revisions.get(ns);
    if (r === undefined) revisions.set(ns, (r = policyRevision(policies.filter((p) => p.metadata.namespace === ns || p.metadata.namespace === s.rootNamespace))));
    return r;
  };
  const agents = s.window.agentReports().map((a) => {
    const certLeftMs = a.certNotAfter === null ? null : Date.parse(a.certNotAfter) - now;
    const policyBehind = a.policyRevision !== null && a.policyRevision !== expected(a.namespace);
    return { ...a, receivedAt: new Date(a.receivedAt).toISOString(), staleConfig: a.configStale || policyBehind || a.policyRevision === null, certLeftMs, certNearExpiry: certLeftMs !== null && certLeftMs < CERT_WARNING_MS };
  });
  return { certWarningMs: CERT_WARNING_MS, agents };
}

function matrixView(s: UiApiSources): unknown {
  const compiled = compilePolicy(s.policies(), { trustDomain: s.trustDomain, rootNamespace: s.rootNamespace });
  const names = new Set<string>();
  for (const e of s.registry.entries()) names.add(`${e.namespace}/${e.service}`);
  const services = [...names].sort().slice(0, MAX_MATRIX_SERVICES);
  const cells = services.map((from) => services.map((to) => {
    const [fns, fsvc] = from.split('/') as [string, string];
    const [tns, tsvc] = to.split('/') as [string, string];
    const d = compiled.evaluate({ source: { trustDomain: s.trustDomain, namespace: fns, service: fsvc }, destination: { namespace: tns, service: tsvc }, protocol: 'tcp' });
    return { allowed: d.allowed, policy: d.policy, rule: d.rule };
  }));
  return { services, truncated: names.size > services.length, cells, revision: policyRevision(s.policies()) };
}

function parseService(text: string | null, what: string): { namespace: string; service: string } | string {
  const parts = (text ?? '').split('/');
  if (parts.length !== 2 || !NAME.test(parts[0] as string) || !NAME.test(parts[1] as string)) return `${what} must be NAMESPACE/SERVICE`;
  return { namespace: parts[0] as string, service: parts[1] as string };
}

/** `?from=NS/SVC&to=NS/SVC[&method=GET&path=/x]`: the decision and the deciding rule's text. */
function explainView(s: UiApiSources, req: IncomingMessage): AdminReply {
  const q = query(req);
  const from = parseService(q.get('from'), 'from');
  const to = parseService(q.get('to'), 'to');
  const method = q.get('method');
  const path = q.get('path');
  const problems = [from, to].filter((p): p is string => typeof p === 'string');
  if ((method === null || method === '') !== (path === null || path === '')) problems.push('method and path go together');
  if (method !== null && method !== '' && !/^[A-Z]{1,16}$/.test(method)) problems.push('method must be an HTTP method in capitals');
  if (path !== null && path !== '' && (!path.startsWith('/') || path.length > 2048)) problems.push('path must start with / (at most 2048 characters)');
  if (problems.length > 0) return jsonReply(400, { error: problems.join('; ') });
  const source = from as { namespace: string; service: string };
  const destination = to as { namespace: string; service: string };
  const http = method === null || method === '' ? undefined : { method, path: path as string };
  const request: AuthorizationRequest = { source: { trustDomain: s.trustDomain, ...source }, destination, protocol: http === undefined ? 'tcp' : 'http', ...(http === undefined ? {} : { http }) };
  const policies = s.policies();
  const decision = compilePolicy(policies, { trustDomain: s.trustDomain, rootNamespace: s.rootNamespace }).evaluate(request);
  const policy = decision.policy === null ? undefined : policies.find((p) => `${p.metadata.namespace}/${p.metadata.name}` === decision.policy);
  const rule = decision.rule === null ? null : (policy?.spec.rules[decision.rule] ?? null);
  return jsonReply(200, { request, decision, rule });
}

export function uiApiRoutes(s: UiApiSources): Record<string, AdminRoute> {
  return {
    '/ui/api/overview': () => jsonReply(200, {
      zone: s.zone,
      trustDomain: s.trustDomain,
      mode: s.mode,
      configVersion: s.configVersion(),
      agentsConnected: s.agentsConnected(),
      global: s.globalLink?.() ?? null,
      windowMinutes: WINDOW_SLOTS,
    }),
    '/ui/api/services': () => jsonReply(200, servicesView(s)),
    '/ui/api/edges': (req) => {
      const windowMs = windowOf(req);
      return jsonReply(200, { zone: s.zone, windowMs, edges: s.window.edges(windowMs) });
    },
    '/ui/api/denials': () => jsonReply(200, { denials: s.window.recentDenials() }),
    '/ui/api/agents': () => jsonReply(200, agentsView(s)),
    '/ui/api/policy': () => jsonReply(200, matrixView(s)),
    '/ui/api/explain': (req) => explainView(s, req),
  };
}
