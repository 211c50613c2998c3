/**
 * Who may hold which registered instance, and how many.
 *
 * An agent's certificate proves a service identity (`ns/service`), which every replica of the service
 * shares; what tells one replica from another is its certificate. So each instance records the serial of
 * the certificate that registered it and the serial its renewal chain started from (`InstanceOwner`,
 * `certificate-lineage.ts`): the workload, across key rotations. Only that workload may re-register,
 * update or delete the instance; a re-registration by it replaces its instance (same id, or same tunnel
 * address) instead of adding one.
 *
 * Caps bound what one stolen or buggy certificate can do to every subscriber's config: a workload
 * normally registers one instance (a few if it has several addresses or tunnel ports), so `perWorkload`
 * is small; `perService` bounds a service identity whose join token mints many certificates. Both are
 * checked, synchronously, right before the instance enters the registry, so concurrent registrations
 * cannot all slip under a cap, and a refused one is never persisted.
 */
import { endpointKey } from '../api/control-protocol.js';
import { HttpError } from './http-io.js';
import type { Liveness } from './instance-lease.js';
import type { StoredRegistration } from './store.js';
import { CODE } from '../common/error-codes.js';
import { CONTROL_LIMITS } from './limits.js';

export interface InstanceOwner {
  /** Serial (lowercase hex) of the certificate that last registered the instance. */
  readonly serial: string;
  /** Serial of the first certificate of its renewal chain: the same workload across rotations. */
  readonly workload: string;
}

export interface InstanceLimits {
  /** Instances one workload (one certificate and its renewals) may hold. */
  readonly perWorkload: number;
  /** Instances one service identity may hold, across all its workloads. */
  readonly perService: number;
}

export const DEFAULT_INSTANCE_LIMITS: InstanceLimits = Object.freeze({ perWorkload: CONTROL_LIMITS.instancesPerWorkload, perService: CONTROL_LIMITS.instancesPerService });

/** What the checks need of the registry. */
export interface OwnershipView {
  get(instanceId: string): StoredRegistration | undefined;
  liveness(instanceId: string): Liveness;
  instanceAt(namespace: string, service: string, key: string): StoredRegistration | undefined;
  instanceCount(namespace: string, service: string): number;
  ownedBy(workload: string): number;
}

/** Certificate serials compare as the CA wrote them: lowercase hex without leading zeros. */
export function normaliseSerial(serial: string): string {
  return serial.toLowerCase().replace(/^0+(?=.)/, '');
}

/** Whether `workload` may change the instance. One stored before owners were recorded may be claimed by its service. */
export function mayChange(registration: StoredRegistration, workload: string): boolean {
  return registration.owner === undefined || registration.owner.workload === workload;
}

/**
 * Throws the refusal (403, 409 or 429, with its code) when `claim` may not enter the registry; `claim.owner`
 * is the registering workload. An update of an instance the workload holds takes no new slot.
 */
export function checkClaim(view: OwnershipView, claim: StoredRegistration & { readonly owner: InstanceOwner }, limits: InstanceLimits): void {
  const { namespace, service, instanceId, owner } = claim;
  const existing = view.get(instanceId);
  if (existing !== undefined && (existing.namespace !== namespace || existing.service !== service)) {
    throw new HttpError(CODE.CONTROL_INSTANCE_TAKEN, `instance ${instanceId} belongs to another workload`);
  }
  if (existing !== undefined && !mayChange(existing, owner.workload)) {
    throw new HttpError(CODE.CONTROL_INSTANCE_TAKEN, `instance ${instanceId} was registered by another certificate of ${namespace}/${service}; only that workload may change it`);
  }
  const atAddress = view.instanceAt(namespace, service, endpointKey(claim));
  const replaced = atAddress !== undefined && atAddress.instanceId !== instanceId ? atAddress : undefined;
  // A live instance of another workload at this address is not ours to replace; a disconnected one is
  // (a workload restarted without its data dir comes back under a new id and a new certificate).
  if (replaced !== undefined && !mayChange(replaced, owner.workload) && view.liveness(replaced.instanceId) === 'connected') {
    throw new HttpError(CODE.CONTROL_ADDRESS_TAKEN, `${endpointKey(claim)} is held by instance ${replaced.instanceId} of another workload, whose agent is connected`);
  }
  if (existing !== undefined) return;
  const freesOwn = replaced?.owner?.workload === owner.workload ? 1 : 0;
  if (view.ownedBy(owner.workload) - freesOwn >= limits.perWorkload) {
    throw new HttpError(CODE.CONTROL_INSTANCE_LIMIT, `this certificate already holds ${limits.perWorkload} instances of ${namespace}/${service}, the most one workload may register; deregister one or reuse its instance id`);
  }
  if (view.instanceCount(namespace, service) - (replaced === undefined ? 0 : 1) >= limits.perService) {
    throw new HttpError(CODE.CONTROL_SERVICE_INSTANCE_LIMIT, `${namespace}/${service} already has ${limits.perService} instances, the most one service identity may register`);
  }
}

/** workload → its instance ids, so the per-workload cap costs a lookup, not a scan. */
export class OwnerIndex {
  private readonly byWorkload = new Map<string, Set<string>>();

  add(instanceId: string, owner: InstanceOwner | undefined): void {
    if (owner === undefined) return;
    let ids = this.byWorkload.get(owner.workload);
    if (ids === undefined) this.byWorkload.set(owner.workload, (ids = new Set()));
    ids.add(instanceId);
  }

  remove(instanceId: string, owner: InstanceOwner | undefined): void {
    if (owner === undefined) return;
    const ids = this.byWorkload.get(owner.workload);
    ids?.delete(instanceId);
    if (ids !== undefined && ids.size === 0) this.byWorkload.delete(owner.workload);
  }

  move(instanceId: string, from: InstanceOwner | undefined, to: InstanceOwner | undefined): void {
    this.remove(instanceId, from);
    this.add(instanceId, to);
  }

  count(workload: string): number {
    return this.byWorkload.get(workload)?.size ?? 0;
  }
}
