/**
 * One HTTPRoute or GRPCRoute against the Gateway this process serves: which of its parentRefs name that
 * Gateway, which listeners each attaches to, which rules are served, and the `status.parents[]` entry
 * (Accepted, ResolvedRefs) for each such parentRef, with the reasons of the Gateway API:
 *
 * - Accepted False `NoMatchingParent` (no listener of that sectionName/port, or it is not served),
 *   `NotAllowedByListeners` (its namespace or kind is not in the listeners' allowedRoutes),
 *   `NoMatchingListenerHostname` (no hostname in common), `UnsupportedValue` (a match, filter or field
 *   the gateway cannot serve, or that its config readers refuse, e.g. a regex outside the bounded
 *   rules: the message says which). A route refused is left out whole; other routes keep serving.
 * - ResolvedRefs False `InvalidKind` (a backendRef not a core Service), `RefNotPermitted` (a Service
 *   in another namespace without a ReferenceGrant), `BackendNotFound` (no such Service, or no such
 *   port). The rule with that backend is left out; the route's other rules are served.
 */
import { validateGatewayValue } from '../config-reader.js';
import { configIssuesOf } from '../../common/config-issues.js';
import { GATEWAY_API_GROUP, Problems, isObj, list, meta, routeHosts, str, translateRoute, type Obj } from '../gateway-api.js';
import type { Snapshot } from './cluster-view.js';
import { condition, type ConditionDraft } from './conditions.js';
import type { ListenerPlan, RouteKind } from './listener-plan.js';
import { namespaceAllowed, referenceAllowed } from './references.js';

export interface ParentStatusDraft {
  /** The parentRef as the route's spec writes it (status must repeat it). */
  readonly parentRef: Obj;
  readonly conditions: readonly ConditionDraft[];
}

export interface RoutePlan {
  readonly kind: RouteKind;
  readonly namespace: string;
  readonly name: string;
  /** Gateway routes (config values) served for it; empty when refused. */
  readonly routes: readonly Obj[];
  /** Listener names it is attached to (for attachedRoutes). */
  readonly listeners: readonly string[];
  readonly parents: readonly ParentStatusDraft[];
}

export interface RouteContext {
  readonly gateway: Obj;
  readonly listeners: readonly ListenerPlan[];
  readonly snapshot: Snapshot;
  /** The config around the routes (mesh, limits...) that a route is validated within. */
  readonly base: Obj;
  readonly baseDir: string;
}

/** The parentRefs of `route` that name the Gateway (group and kind default to Gateway API's Gateway). */
function refsToGateway(route: Obj, gw: { namespace: string; name: string }): Obj[] {
  const { namespace } = meta(route);
  return list(isObj(route.spec) ? route.spec.parentRefs : undefined).filter((r) => (str(r.group) ?? GATEWAY_API_GROUP) === GATEWAY_API_GROUP && (str(r.kind) ?? 'Gateway') === 'Gateway' && str(r.name) === gw.name && (str(r.namespace) ?? namespace) === gw.namespace);
}

/** The listeners a parentRef attaches to, or the Accepted=False condition saying why none. */
function attach(ref: Obj, route: Obj, kind: RouteKind, ctx: RouteContext): string[] | ConditionDraft {
  const gw = meta(ctx.gateway);
  const { namespace } = meta(route);
  const named = ctx.listeners.filter((l) => (ref.sectionName === undefined || l.name === ref.sectionName) && (ref.port === undefined || l.port === ref.port));
  if (named.length === 0) return condition('Accepted', false, 'NoMatchingParent', `Gateway ${gw.namespace}/${gw.name} has no listener${ref.sectionName === undefined ? '' : ` named ${String(ref.sectionName)}`}${ref.port === undefined ? '' : ` on port ${String(ref.port)}`}`);
  const served = named.filter((l) => l.served !== undefined);
  if (served.length === 0) return condition('Accepted', false, 'NoMatchingParent', `listener ${named.map((l) => l.name).join(', ')} is not served (see the Gateway's status)`);
  const allowed = served.filter((l) => l.kinds.includes(kind) && namespaceAllowed(l.spec, gw.namespace, namespace, ctx.snapshot.namespaces));
  if (allowed.length === 0) return condition('Accepted', false, 'NotAllowedByListeners', `listener ${served.map((l) => l.name).join(', ')} does not allow ${kind}s from namespace ${namespace}`);
  const hostnames = Array.isArray((route.spec as Obj | undefined)?.hostnames) ? ((route.spec as Obj).hostnames as unknown[]).map(String) : [];
  const matching = allowed.filter((l) => routeHosts(hostnames, l.hostname).length > 0);
  if (matching.length === 0) return condition('Accepted', false, 'NoMatchingListenerHostname', `no hostname of the route (${hostnames.join(', ')}) is within listener ${allowed.map((l) => `${l.name} (${l.hostname ?? '*'})`).join(', ')}`);
  return matching.map((l) => l.name);
}

/** Rules whose backendRef cannot be served, and the first reason (ResolvedRefs False). */
function checkBackends(route: Obj, kind: RouteKind, snapshot: Snapshot): { skip: Set<number>; refs: ConditionDraft } {
  const { namespace } = meta(route);
  const skip = new Set<number>();
  let refs: ConditionDraft | undefined;
  list(isObj(route.spec) ? route.spec.rules : undefined).forEach((rule, i) => {
    for (const b of list(rule.backendRefs)) {
      const ns = str(b.namespace) ?? namespace;
      const name = str(b.name) ?? '';
      let problem: ConditionDraft | undefined;
      if ((str(b.group) ?? '') !== '' || (str(b.kind) ?? 'Service') !== 'Service') problem = condition('ResolvedRefs', false, 'InvalidKind', `rules[${i}]: backendRef ${str(b.group) ?? ''}/${str(b.kind) ?? ''} ${name} is not a core Service`);
      else if (!referenceAllowed(snapshot.referencegrants.values(), { group: GATEWAY_API_GROUP, kind, namespace }, { group: '', kind: 'Service', namespace: ns, name })) problem = condition('ResolvedRefs', false, 'RefNotPermitted', `rules[${i}]: Service ${ns}/${name}: no ReferenceGrant in ${ns} lets ${kind}s of ${namespace} use it`);
      else {
        const svc = snapshot.services.get(`${ns}/${name}`);
        const ports = list(isObj(svc?.spec) ? svc.spec.ports : undefined).map((p) => p.port);
        if (svc === undefined) problem = condition('ResolvedRefs', false, 'BackendNotFound', `rules[${i}]: Service ${ns}/${name} not found`);
        else if (b.port !== undefined && !ports.includes(b.port)) problem = condition('ResolvedRefs', false, 'BackendNotFound', `rules[${i}]: Service ${ns}/${name} has no port ${String(b.port)} (it has ${ports.join(', ') || 'none'})`);
      }
      if (problem !== undefined) {
        skip.add(i);
        refs ??= problem;
      }
    }
  });
  return { skip, refs: refs ?? condition('ResolvedRefs', true, 'ResolvedRefs', 'every backendRef resolved') };
}

/** The problems the gateway's own readers find in these routes (bounded regexes, paths, headers...). */
function validationProblems(routes: Obj[], ctx: RouteContext, listeners: readonly string[]): string[] {
  const servedListeners = ctx.listeners.filter((l) => l.served !== undefined && listeners.includes(l.name)).map((l) => l.served);
  try {
    validateGatewayValue({ ...ctx.base, listeners: servedListeners, routes }, 'route', ctx.baseDir, { emptyRoutes: true });
    return [];
  } catch (err) {
    const issues = configIssuesOf(err);
    return issues.length > 0 ? issues.map((i) => `${i.path}: ${i.message}`) : [(err as Error).message];
  }
}

export function planRoute(route: Obj, kind: RouteKind, ctx: RouteContext): RoutePlan | undefined {
  const gw = meta(ctx.gateway);
  const refs = refsToGateway(route, gw);
  if (refs.length === 0) return undefined;
  const { namespace, name } = meta(route);
  const attached = refs.map((ref) => ({ ref, on: attach(ref, route, kind, ctx) }));
  const listeners = [...new Set(attached.flatMap((a) => (Array.isArray(a.on) ? a.on : [])))];
  const backends = checkBackends(route, kind, ctx.snapshot);
  let refused: ConditionDraft | undefined;
  let routes: Obj[] = [];
  if (listeners.length > 0) {
    const p = new Problems();
    const hostnames = new Map(ctx.listeners.map((l) => [l.name, l.hostname]));
    routes = translateRoute(route, kind === 'GRPCRoute', listeners, hostnames, p, backends.skip);
    const problems = p.items.length > 0 ? p.items : validationProblems(routes, ctx, listeners);
    if (problems.length > 0) {
      refused = condition('Accepted', false, 'UnsupportedValue', problems.join('; '));
      routes = [];
    }
  }
  const parents = attached.map(({ ref, on }) => ({
    parentRef: ref,
    conditions: [Array.isArray(on) ? refused ?? condition('Accepted', true, 'Accepted', `attached to listener ${on.join(', ')}`) : on, backends.refs],
  }));
  return { kind, namespace, name, routes, listeners: refused === undefined ? listeners : [], parents };
}
