/**
 * The statuses a plan asks for, as `StatusTarget`s for the writer: the Gateway (Accepted, Programmed,
 * and per listener supportedKinds, attachedRoutes, Accepted, Programmed, ResolvedRefs), every route that
 * names it (or carries a stale entry of ours for it), and the GatewayClass (Accepted).
 *
 * `programmed` is the outcome of the last apply: listeners served by the config in force are Programmed;
 * when the config was refused (or is not applied yet) they are `Pending` with the reason.
 */
import { GATEWAY_API_GROUP, isObj, list, meta, type Obj } from '../gateway-api.js';
import type { Snapshot } from './cluster-view.js';
import { condition, stampConditions } from './conditions.js';
import type { GatewayPlan } from './gateway-plan.js';
import { mergeParents, ourParentEntry, type StatusTarget } from './status-writer.js';

export type Programmed = { readonly ok: true } | { readonly ok: false; readonly message: string };

const generationOf = (o: Obj): number => (isObj(o.metadata) && typeof o.metadata.generation === 'number' ? o.metadata.generation : 0);

export function statusTargets(plan: Extract<GatewayPlan, { state: 'ours' }>, snapshot: Snapshot, programmed: Programmed, now: string): StatusTarget[] {
  const gw = plan.gateway;
  const gwKey = meta(gw);
  const generation = generationOf(gw);
  const attached = (listener: string): number => plan.routes.filter((r) => r.listeners.includes(listener)).length;
  const anyServed = plan.listeners.some((l) => l.served !== undefined);
  const gatewayProgrammed = !anyServed
    ? condition('Programmed', false, 'Invalid', 'no listener can be served')
    : programmed.ok ? condition('Programmed', true, 'Programmed', 'the listeners and routes are served') : condition('Programmed', false, 'Pending', programmed.message);
  const targets: StatusTarget[] = [{
    plural: 'gateways',
    object: gw,
    desired: (current) => {
      const before = new Map(list(current.listeners).map((l) => [l.name, l]));
      return {
        ...current,
        conditions: stampConditions([plan.accepted, gatewayProgrammed], generation, current.conditions, now),
        listeners: plan.listeners.map((l) => {
          const listenerProgrammed = l.served === undefined
            ? condition('Programmed', false, 'Invalid', 'not served (see Accepted and ResolvedRefs)')
            : programmed.ok ? condition('Programmed', true, 'Programmed', 'served') : condition('Programmed', false, 'Pending', programmed.message);
          return {
            name: l.name,
            supportedKinds: l.kinds.map((kind) => ({ group: GATEWAY_API_GROUP, kind })),
            attachedRoutes: l.served === undefined ? 0 : attached(l.name),
            conditions: stampConditions([...l.conditions, listenerProgrammed], generation, before.get(l.name)?.conditions, now),
          };
        }),
      };
    },
  }, {
    plural: 'gatewayclasses',
    object: plan.gatewayClass,
    desired: (current) => ({ ...current, conditions: stampConditions([condition('Accepted', true, 'Accepted', 'handled by trellis.dev/gateway-controller')], generationOf(plan.gatewayClass), current.conditions, now) }),
  }];
  const planned = new Map(plan.routes.map((r) => [`${r.kind}/${r.namespace}/${r.name}`, r]));
  for (const [plural, kind] of [['httproutes', 'HTTPRoute'], ['grpcroutes', 'GRPCRoute']] as const) {
    for (const route of snapshot[plural].values()) {
      const { namespace, name } = meta(route);
      const r = planned.get(`${kind}/${namespace}/${name}`);
      const stale = list(isObj(route.status) ? route.status.parents : undefined).some((e) => ourParentEntry(e, namespace, gwKey));
      if (r === undefined && !stale) continue;
      targets.push({ plural, object: route, desired: (current) => mergeParents(current, namespace, gwKey, r?.parents ?? [], generationOf(route), now) });
    }
  }
  return targets;
}
