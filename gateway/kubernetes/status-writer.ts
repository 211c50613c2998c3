/**
 * Writes what the plan found to the status subresource: the Gateway (conditions, listeners), each route's
 * `status.parents[]` entry for this Gateway (entries of other controllers and of other Gateways are kept
 * as they are; ours for a parentRef the route no longer has is removed), and the GatewayClass's Accepted.
 *
 * A status is written only when it differs from the object's (lastTransitionTime is kept for a condition
 * whose status held, so an unchanged status compares equal): our own write comes back as a watch event,
 * is planned again, compares equal and is not written again, so there is no write loop. A write carries
 * the resourceVersion it was computed from; on 409 Conflict the object is read again and the merge redone
 * (at most `MAX_ATTEMPTS` times, then the next reconcile tries again).
 */
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Counter } from 'prom-client';
import { fieldManager, makeTrellisApiClient } from '../../common/kubernetes-client.js';
import { statusCodeOf } from '../../common/kubernetes-reflector.js';
import type { Logger } from '../../common/log.js';
import { describeError } from '../../common/errors.js';
import { GATEWAY_API_GROUP, isObj, list, meta, str, type Obj } from '../gateway-api.js';
import { GATEWAY_API_KINDS, type GatewayApiPlural } from './api-sources.js';
import { sameStatus, stampConditions } from './conditions.js';
import { CONTROLLER_NAME } from './gateway-plan.js';

const MAX_ATTEMPTS = 5;

export interface StatusTarget {
  readonly plural: GatewayApiPlural;
  /** The object as last seen (its resourceVersion, generation and status). */
  readonly object: Obj;
  /** The status to write, given the object's current one (called again after a conflict). */
  readonly desired: (current: Obj) => Obj;
}

export class StatusWriter {
  private readonly api: CustomObjectsApi;

  constructor(kc: KubeConfig, private readonly log: Logger, private readonly writes: Counter<'kind' | 'result'>) {
    this.api = makeTrellisApiClient(kc, CustomObjectsApi, 'gateway');
  }

  /** Writes the target's status when it changed; true when a write was made. */
  async write(target: StatusTarget): Promise<boolean> {
    const { kind, version } = GATEWAY_API_KINDS[target.plural];
    let object = target.object;
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const current = isObj(object.status) ? object.status : {};
      const next = target.desired(current);
      if (sameStatus(current, next)) return false;
      const { namespace, name } = meta(object);
      const m = isObj(object.metadata) ? object.metadata : {};
      const body = { apiVersion: `${GATEWAY_API_GROUP}/${version}`, kind, metadata: { name, ...(m.namespace === undefined ? {} : { namespace }), resourceVersion: m.resourceVersion }, status: next };
      const at = { group: GATEWAY_API_GROUP, version, plural: target.plural, name, body, fieldManager: fieldManager('gateway') };
      try {
        if (m.namespace === undefined) await this.api.replaceClusterCustomObjectStatus(at);
        else await this.api.replaceNamespacedCustomObjectStatus({ ...at, namespace });
        this.writes.inc({ kind, result: 'written' });
        this.log.debug({ kind, name: `${m.namespace === undefined ? '' : `${namespace}/`}${name}` }, 'status written');
        return true;
      } catch (err) {
        const code = statusCodeOf(err);
        if (code !== 409 || attempt === MAX_ATTEMPTS) {
          this.writes.inc({ kind, result: code === 409 ? 'conflict' : 'error' });
          this.log.warn({ kind, name, status: code, err: describeError(err) }, 'status not written; the next change or resync tries again');
          return false;
        }
        this.writes.inc({ kind, result: 'conflict' });
        object = (m.namespace === undefined
          ? await this.api.getClusterCustomObject({ group: GATEWAY_API_GROUP, version, plural: target.plural, name })
          : await this.api.getNamespacedCustomObject({ group: GATEWAY_API_GROUP, version, namespace, plural: target.plural, name })) as Obj;
      }
    }
    return false;
  }
}

/** Whether a status.parents entry is this controller's for the Gateway `gw` (parentRef namespace defaults to the route's). */
export function ourParentEntry(entry: Obj, routeNamespace: string, gw: { namespace: string; name: string }): boolean {
  const ref = isObj(entry.parentRef) ? entry.parentRef : {};
  return str(entry.controllerName) === CONTROLLER_NAME && (str(ref.group) ?? GATEWAY_API_GROUP) === GATEWAY_API_GROUP && (str(ref.kind) ?? 'Gateway') === 'Gateway' && str(ref.name) === gw.name && (str(ref.namespace) ?? routeNamespace) === gw.namespace;
}

/** `status.parents` with this controller's entries for `gw` replaced by `ours` (stamped), others kept in place. */
export function mergeParents(current: Obj, routeNamespace: string, gw: { namespace: string; name: string }, ours: readonly { parentRef: Obj; conditions: Parameters<typeof stampConditions>[0] }[], generation: number, now: string): Obj {
  const before = list(current.parents);
  const kept = before.filter((e) => !ourParentEntry(e, routeNamespace, gw));
  const previous = (ref: Obj): unknown => before.find((e) => ourParentEntry(e, routeNamespace, gw) && sameRef(e.parentRef, ref))?.conditions;
  const mine = ours.map((p) => ({ parentRef: p.parentRef, controllerName: CONTROLLER_NAME, conditions: stampConditions(p.conditions, generation, previous(p.parentRef), now) }));
  return { ...current, parents: [...kept, ...mine] };
}

function sameRef(a: unknown, b: Obj): boolean {
  return isObj(a) && str(a.name) === str(b.name) && str(a.namespace) === str(b.namespace) && a.sectionName === b.sectionName && a.port === b.port;
}
