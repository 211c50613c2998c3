/**
 * The whole picture for the one Gateway this process serves (`--gateway NAMESPACE/NAME`), computed from
 * a snapshot of the cluster, with no I/O: whether the Gateway is ours (its GatewayClass names our
 * controller; a Gateway of another class is ignored, no status written), its listeners and routes
 * judged one by one (listener-plan.ts, route-plan.ts), the gateway config value they make, and the
 * status drafts for the Gateway, its listeners, its routes and its GatewayClass.
 *
 * Routes are ordered as the Gateway API orders matches (within a host, which route-table.ts orders by
 * specificity): an exact path, then the longest prefix, then a method, then the most header matches,
 * then the most query matches; ties go to the oldest route, then by namespace/name, then rule order.
 */
import { createHash } from 'node:crypto';
import { GATEWAY_API_GROUP, isObj, list, meta, str, type Obj } from '../gateway-api.js';
import { referenceAllowed } from './references.js';
import type { Snapshot } from './cluster-view.js';
import { condition, type ConditionDraft } from './conditions.js';
import { planListeners, type ListenerPlan, type RouteKind, type SecretPem } from './listener-plan.js';
import { planRoute, type RoutePlan } from './route-plan.js';

export const CONTROLLER_NAME = 'trellis.dev/gateway-controller';

export interface PlanInput {
  readonly snapshot: Snapshot;
  readonly gateway: { readonly namespace: string; readonly name: string };
  /** The base config (mesh, admin, limits, jwtProviders...) the listeners and routes are added to. */
  readonly base: Obj;
  readonly baseDir: string;
  /** Where Secrets are written as files: `<certDir>/<namespace>/<name>/tls.{crt,key}`. */
  readonly certDir: string;
  /** The address every listener binds. */
  readonly listenAddress: string;
}

export type GatewayPlan =
  | { readonly state: 'absent' | 'foreign'; readonly message: string }
  | {
      readonly state: 'ours';
      readonly message: string;
      readonly gateway: Obj;
      readonly gatewayClass: Obj;
      /** The config value to apply; undefined when no listener can be served. */
      readonly value: Obj | undefined;
      readonly secrets: ReadonlyMap<string, SecretPem>;
      readonly listeners: readonly ListenerPlan[];
      readonly routes: readonly RoutePlan[];
      /** The Gateway's Accepted condition (Programmed is added once the config is applied or refused). */
      readonly accepted: ConditionDraft;
    };

function specificity(route: Obj): number[] {
  const m = isObj(route.match) ? route.match : {};
  const path = isObj(m.path) ? m.path : {};
  const pathRank = typeof path.exact === 'string' ? [2, path.exact.length] : typeof path.prefix === 'string' ? [1, path.prefix.length] : [0, 0];
  return [...pathRank, Array.isArray(m.methods) ? 1 : 0, list(m.headers).length, list(m.query).length];
}

function compareKeys(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if ((a[i] as number) !== (b[i] as number)) return (b[i] as number) - (a[i] as number);
  return 0;
}

/**
 * Every gateway route of the accepted route plans, in Gateway API precedence. Names made from namespace
 * and name can meet (`a-b`/`c` and `a`/`b-c`, or an HTTPRoute and a GRPCRoute of one name): a repeated
 * one gets a hash of its unambiguous coordinates, as the reader refuses a name used twice.
 */
function orderRoutes(plans: readonly { plan: RoutePlan; created: string }[]): Obj[] {
  const byAge = [...plans].sort((a, b) => a.created.localeCompare(b.created) || `${a.plan.namespace}/${a.plan.name}`.localeCompare(`${b.plan.namespace}/${b.plan.name}`) || a.plan.kind.localeCompare(b.plan.kind));
  const seen = new Set<string>();
  const all = byAge.flatMap(({ plan }) => plan.routes.map((r, i) => {
    let name = String(r.name);
    if (seen.has(name)) name = `${name.slice(0, 54).replace(/-+$/, '')}-${createHash('sha256').update(`${plan.kind}/${plan.namespace}/${plan.name}/${i}`).digest('hex').slice(0, 8)}`;
    seen.add(name);
    return { r: { ...r, name }, key: specificity(r) };
  }));
  return all.sort((a, b) => compareKeys(a.key, b.key)).map((e) => e.r);
}

function acceptedCondition(gw: Obj, listeners: readonly ListenerPlan[]): ConditionDraft {
  const spec = isObj(gw.spec) ? gw.spec : {};
  if (list(spec.addresses).length > 0) return condition('Accepted', false, 'UnsupportedAddress', 'spec.addresses is not served: the gateway is reached through its Service');
  const bad = listeners.filter((l) => l.served === undefined).map((l) => l.name);
  if (listeners.length > 0 && bad.length === listeners.length) return condition('Accepted', false, 'ListenersNotValid', `no listener can be served (${bad.join(', ')}): see status.listeners`);
  if (bad.length > 0) return condition('Accepted', true, 'ListenersNotValid', `listener ${bad.join(', ')} cannot be served (see status.listeners); the others are`);
  return condition('Accepted', true, 'Accepted', 'accepted by trellis.dev/gateway-controller');
}

/**
 * The namespaces whose TLS Secrets the Gateway needs read: its own, and those its certificateRefs name
 * where a ReferenceGrant lets it (the Secrets of other namespaces are never read). Empty when the
 * Gateway is absent or not ours.
 */
export function secretNamespaces(snapshot: Snapshot, gateway: { readonly namespace: string; readonly name: string }): Set<string> {
  const gw = snapshot.gateways.get(`${gateway.namespace}/${gateway.name}`);
  const className = str(isObj(gw?.spec) ? gw.spec.gatewayClassName : undefined) ?? '';
  const gatewayClass = snapshot.gatewayclasses.get(className);
  if (gw === undefined || str(isObj(gatewayClass?.spec) ? gatewayClass.spec.controllerName : undefined) !== CONTROLLER_NAME) return new Set();
  const out = new Set([gateway.namespace]);
  for (const l of list(isObj(gw.spec) ? gw.spec.listeners : undefined)) {
    for (const ref of list(isObj(l.tls) ? l.tls.certificateRefs : undefined)) {
      const ns = str(ref.namespace) ?? gateway.namespace;
      if (referenceAllowed(snapshot.referencegrants.values(), { group: GATEWAY_API_GROUP, kind: 'Gateway', namespace: gateway.namespace }, { group: '', kind: 'Secret', namespace: ns, name: str(ref.name) ?? '' })) out.add(ns);
    }
  }
  return out;
}

export function planGateway(input: PlanInput): GatewayPlan {
  const { snapshot } = input;
  const key = `${input.gateway.namespace}/${input.gateway.name}`;
  const gw = snapshot.gateways.get(key);
  if (gw === undefined) return { state: 'absent', message: `no Gateway ${key}` };
  const className = str(isObj(gw.spec) ? gw.spec.gatewayClassName : undefined) ?? '';
  const gatewayClass = snapshot.gatewayclasses.get(className);
  const controller = str(isObj(gatewayClass?.spec) ? gatewayClass.spec.controllerName : undefined);
  if (gatewayClass === undefined || controller !== CONTROLLER_NAME) {
    return { state: 'foreign', message: `Gateway ${key} is of GatewayClass "${className}"${gatewayClass === undefined ? ', which does not exist' : `, controlled by ${controller ?? 'nobody'}`}: not ours (${CONTROLLER_NAME}), ignored` };
  }
  const listeners = planListeners(gw, snapshot, input.certDir, input.listenAddress);
  const ctx = { gateway: gw, listeners, snapshot, base: input.base, baseDir: input.baseDir };
  const routes: { plan: RoutePlan; created: string }[] = [];
  for (const [resource, kind] of [['httproutes', 'HTTPRoute'], ['grpcroutes', 'GRPCRoute']] as const satisfies readonly (readonly [keyof Snapshot, RouteKind])[]) {
    for (const route of snapshot[resource].values()) {
      const plan = planRoute(route, kind, ctx);
      if (plan !== undefined) routes.push({ plan, created: str(isObj(route.metadata) ? route.metadata.creationTimestamp : undefined) ?? '' });
    }
  }
  const served = listeners.filter((l) => l.served !== undefined);
  const secrets = new Map(served.flatMap((l) => [...l.secrets]));
  const value = served.length === 0 ? undefined : { ...input.base, listeners: served.map((l) => l.served), routes: orderRoutes(routes) };
  return { state: 'ours', message: `Gateway ${meta(gw).namespace}/${meta(gw).name}`, gateway: gw, gatewayClass, value, secrets, listeners, routes: routes.map((r) => r.plan), accepted: acceptedCondition(gw, listeners) };
}
