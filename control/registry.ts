/**
 * The zone's service registry: every workload instance an agent registered, whether its agent is
 * connected, and whether its app passes its health check. Zone-aware from the start: every endpoint
 * carries its zone (this control plane's), so a global control plane can later merge registries.
 *
 * An endpoint is healthy when its app is healthy and its agent is connected, or disconnected for less
 * than `disconnectGraceMs` (a reconnect blip must not empty a service). An instance whose agent's watch
 * stays closed for `leaseMs` is removed, and `onDropped` lets the store forget it; after a restart,
 * stored instances get a fresh lease to be reclaimed in (`instance-lease.ts`).
 *
 * Each instance an agent registered records the certificate that registered it (`owner`): the API lets
 * only that workload change it, and caps how many one workload and one service may hold
 * (`instance-ownership.ts`); the registry keeps the per-workload count that needs.
 *
 * Changes are reported to listeners as they happen, one event per endpoint; the watch hub batches them.
 *
 * A service is "in the mesh" while it has at least one instance (`meshServices`, `hasMeshService`): a
 * Kubernetes Service with no pod of the mesh behind it is defined here but in nobody's wildcard
 * subscription. Joining and leaving are reported as `service` events, before the endpoint events.
 *
 * Where the platform defines services itself (Kubernetes Services), `defineService` sets a service's
 * ports (Service port → pod port) and virtual IPs; a definition takes precedence over the ports that
 * registrations declare, which are all a universal-mode service has. Either way each endpoint also says
 * which app port it serves each service port on, when that is not the port's `targetPort`
 * (`service-ports.ts` has the rule); the layout is worked out once per change and cached.
 */
import type { Endpoint, PortProtocol, ServicePort, UpstreamService } from '../api/data-plane.js';
import type { InstanceOwner } from './instance-ownership.js';
import { endpointKey, upstreamKey } from '../api/control-protocol.js';
import { InstanceLeases, type LeaseTimes, type Liveness } from './instance-lease.js';
import { OwnerIndex } from './instance-ownership.js';
import { layoutFromDefinition, layoutFromRegistrations, sameTargetPorts, type ServiceLayout } from './service-ports.js';
import type { StoredRegistration } from './store.js';

export interface RegistryOptions extends LeaseTimes {
  readonly zone: string;
  readonly now?: () => number;
  /** The registry removed an instance itself (its lease ended, or another took its address): the store deletes its record. */
  readonly onDropped?: (registration: StoredRegistration, why: 'lease' | 'replaced') => void;
}

/** A service as the platform defines it (a Kubernetes Service): its ports and its virtual (cluster) IPs. */
export interface ServiceDefinition {
  readonly ports: readonly ServicePort[];
  readonly virtualIps: readonly string[];
  /** The platform's word on exporting the service to other zones (Service and Namespace labels); absent: none. */
  readonly export?: boolean;
}

export type RegistryEvent =
  | { readonly kind: 'endpoint'; readonly namespace: string; readonly service: string; readonly key: string; readonly endpoint: Endpoint | undefined }
  | { readonly kind: 'ports'; readonly namespace: string; readonly service: string }
  /** Only the service's export word changed (`exportWords`): nothing for agents, only for the zone link. */
  | { readonly kind: 'export'; readonly namespace: string; readonly service: string }
  /** The service joined the mesh (its first instance) or left it (its last instance went); see `meshServices`. */
  | { readonly kind: 'service'; readonly namespace: string; readonly service: string; readonly present: boolean };

interface Instance {
  registration: StoredRegistration;
  appHealthy: boolean;
  changedAt: number;
}

/** One instance as the admin port's /registry shows it: where it is, and how healthy. */
export interface RegistryEntryView extends Pick<StoredRegistration, 'instanceId' | 'service' | 'namespace' | 'zone' | 'address' | 'tunnelPort' | 'ports'> {
  readonly agent: Liveness;
  readonly owner?: InstanceOwner;
  readonly appHealthy: boolean;
  readonly healthy: boolean;
  readonly since: string;
}

export class ServiceRegistry {
  private readonly instances = new Map<string, Instance>();
  /** upstreamKey → instance ids, for building one service's view without scanning everything. */
  private readonly byService = new Map<string, Set<string>>();
  /** upstreamKey → the platform's definition of the service. */
  private readonly definitions = new Map<string, ServiceDefinition>();
  /** upstreamKey → its ports and each instance's target ports; dropped whenever either may change. */
  private readonly layouts = new Map<string, ServiceLayout>();
  private readonly listeners = new Set<(event: RegistryEvent) => void>();
  private readonly owners = new OwnerIndex();
  private readonly leases: InstanceLeases;
  private readonly now: () => number;

  constructor(private readonly options: RegistryOptions) {
    this.now = options.now ?? Date.now;
    this.leases = new InstanceLeases(options, (id) => this.stale(id), (id) => this.expire(id));
  }

  get zone(): string {
    return this.options.zone;
  }

  subscribe(listener: (event: RegistryEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Registrations read from the store at start: healthy as last reported for the startup grace, then leased. */
  restore(registrations: readonly StoredRegistration[]): void {
    for (const registration of registrations) {
      this.leases.restore(registration.instanceId);
      this.add({ registration, appHealthy: registration.healthy, changedAt: this.now() });
    }
  }

  /** An agent opened its watch with this registration; returns the token that `disconnect` must name. */
  connect(registration: StoredRegistration): number {
    const existing = this.instances.get(registration.instanceId);
    // A workload re-registered under a new instance id at the same tunnel address replaces the old one.
    const key = endpointKey(registration);
    for (const id of this.byService.get(upstreamKey(registration.namespace, registration.service)) ?? []) {
      const other = this.instances.get(id);
      if (other !== undefined && id !== registration.instanceId && endpointKey(other.registration) === key && this.remove(id)) this.options.onDropped?.(other.registration, 'replaced');
    }
    if (existing !== undefined) {
      const before = this.endpointOf(existing);
      const oldKey = endpointKey(existing.registration);
      const layoutBefore = this.layout(existing.registration.namespace, existing.registration.service);
      const moved = existing.registration.service !== registration.service || existing.registration.namespace !== registration.namespace;
      if (moved || oldKey !== key) {
        this.remove(registration.instanceId);
        return this.connect(registration);
      }
      const lease = this.leases.connect(registration.instanceId);
      this.owners.move(registration.instanceId, existing.registration.owner, registration.owner);
      const exportChanged = existing.registration.export !== registration.export;
      existing.registration = registration;
      existing.appHealthy = registration.healthy;
      existing.changedAt = this.now();
      this.relayout(registration.namespace, registration.service, layoutBefore, registration.instanceId);
      this.emitIfChanged(existing, before);
      if (exportChanged) this.emit({ kind: 'export', namespace: registration.namespace, service: registration.service });
      return lease;
    }
    const lease = this.leases.connect(registration.instanceId);
    this.add({ registration, appHealthy: registration.healthy, changedAt: this.now() });
    return lease;
  }

  /** The agent's watch closed: its lease starts, unless a newer watch holds the instance. */
  disconnect(instanceId: string, lease: number): void {
    const instance = this.instances.get(instanceId);
    if (instance !== undefined && this.leases.disconnect(instanceId, lease)) instance.changedAt = this.now();
  }

  setHealth(instanceId: string, healthy: boolean): StoredRegistration | undefined {
    const instance = this.instances.get(instanceId);
    if (instance === undefined) return undefined;
    if (instance.appHealthy === healthy) return instance.registration;
    const before = this.endpointOf(instance);
    instance.appHealthy = healthy;
    instance.registration = Object.freeze({ ...instance.registration, healthy, updatedAt: new Date(this.now()).toISOString() });
    instance.changedAt = this.now();
    this.emitIfChanged(instance, before);
    return instance.registration;
  }

  get(instanceId: string): StoredRegistration | undefined {
    return this.instances.get(instanceId)?.registration;
  }

  liveness(instanceId: string): Liveness {
    return this.leases.liveness(instanceId);
  }

  /** The instance of a service at a tunnel address (`endpointKey`), if any. */
  instanceAt(namespace: string, service: string, key: string): StoredRegistration | undefined {
    for (const id of this.byService.get(upstreamKey(namespace, service)) ?? []) {
      const registration = this.instances.get(id)?.registration;
      if (registration !== undefined && endpointKey(registration) === key) return registration;
    }
    return undefined;
  }

  /** How many instances a service has (its identity's count, for the per-service cap). */
  instanceCount(namespace: string, service: string): number {
    return this.byService.get(upstreamKey(namespace, service))?.size ?? 0;
  }

  /** How many instances a workload (`InstanceOwner.workload`) registered, for the per-workload cap. */
  ownedBy(workload: string): number {
    return this.owners.count(workload);
  }

  remove(instanceId: string): boolean {
    const instance = this.instances.get(instanceId);
    if (instance === undefined) return false;
    this.leases.forget(instanceId);
    this.owners.remove(instanceId, instance.registration.owner);
    const { namespace, service } = instance.registration;
    const skey = upstreamKey(namespace, service);
    const layoutBefore = this.layout(namespace, service);
    this.instances.delete(instanceId);
    const ids = this.byService.get(skey);
    ids?.delete(instanceId);
    const left = ids !== undefined && ids.size === 0;
    if (left) this.byService.delete(skey);
    this.emit({ kind: 'endpoint', namespace, service, key: endpointKey(instance.registration), endpoint: undefined });
    this.relayout(namespace, service, layoutBefore, instanceId);
    if (left) this.emit({ kind: 'service', namespace, service, present: false });
    return true;
  }

  /**
   * The platform's definition of a service (Kubernetes mode); undefined removes it, and the service's
   * ports are again those its registrations declare. Watchers are told only when something changed.
   */
  defineService(namespace: string, service: string, definition: ServiceDefinition | undefined): void {
    const key = upstreamKey(namespace, service);
    const before = definitionSignature(this.definitions.get(key));
    const layoutBefore = this.layout(namespace, service);
    if (definition === undefined) this.definitions.delete(key);
    else this.definitions.set(key, Object.freeze({ ports: Object.freeze(definition.ports.map((p) => Object.freeze({ ...p })).sort((a, b) => a.port - b.port)), virtualIps: Object.freeze([...definition.virtualIps]), ...(definition.export === undefined ? {} : { export: definition.export }) }));
    const after = definitionSignature(this.definitions.get(key));
    if (after === before) return;
    if (after.slice(0, after.lastIndexOf('|')) === before.slice(0, before.lastIndexOf('|'))) return this.emit({ kind: 'export', namespace, service });
    // The virtual IPs travel with the whole upstream: a changed definition always sends it.
    if (!this.relayout(namespace, service, layoutBefore)) this.emit({ kind: 'ports', namespace, service });
  }

  /** One service as a caller's sidecar sees it. */
  upstream(namespace: string, service: string): UpstreamService {
    const endpoints: Endpoint[] = [];
    for (const id of this.byService.get(upstreamKey(namespace, service)) ?? []) {
      const instance = this.instances.get(id);
      if (instance !== undefined) endpoints.push(this.endpointOf(instance));
    }
    const virtualIps = this.definitions.get(upstreamKey(namespace, service))?.virtualIps ?? [];
    return Object.freeze({ name: service, namespace, ports: this.layout(namespace, service).ports, endpoints: Object.freeze(endpoints), ...(virtualIps.length === 0 ? {} : { virtualIps }) });
  }

  /** Every service in the mesh (with at least one instance), or those of one namespace. */
  meshServices(namespace?: string): { readonly namespace: string; readonly service: string }[] {
    const found: { namespace: string; service: string }[] = [];
    for (const key of this.byService.keys()) {
      const slash = key.indexOf('/');
      const ns = key.slice(0, slash);
      if (namespace === undefined || ns === namespace) found.push({ namespace: ns, service: key.slice(slash + 1) });
    }
    return found;
  }

  /** What the platform's definition, else each instance, says about exporting the service (`exports.ts` decides). */
  exportWords(namespace: string, service: string): { readonly platform?: boolean; readonly instances: readonly (boolean | undefined)[] } {
    const platform = this.definitions.get(upstreamKey(namespace, service))?.export;
    const instances = [...(this.byService.get(upstreamKey(namespace, service)) ?? [])].map((id) => this.instances.get(id)?.registration.export);
    return platform === undefined ? { instances } : { platform, instances };
  }

  hasMeshService(namespace: string, service: string): boolean {
    return this.byService.has(upstreamKey(namespace, service));
  }

  /** The protocols of a service's ports, for policy validation (an HTTP rule on a TCP-only service). */
  protocolsOf(namespace: string, service: string): ReadonlySet<PortProtocol> | undefined {
    const ports = this.layout(namespace, service).ports;
    return ports.length === 0 ? undefined : new Set(ports.map((p) => p.protocol));
  }

  counts(): { readonly instances: number; readonly connected: number; readonly healthy: number } {
    let connected = 0;
    let healthy = 0;
    for (const instance of this.instances.values()) {
      if (this.leases.liveness(instance.registration.instanceId) === 'connected') connected++;
      if (this.isHealthy(instance)) healthy++;
    }
    return { instances: this.instances.size, connected, healthy };
  }

  entries(): RegistryEntryView[] {
    return [...this.instances.values()].map((i) => ({
      instanceId: i.registration.instanceId,
      service: i.registration.service,
      namespace: i.registration.namespace,
      zone: i.registration.zone,
      address: i.registration.address,
      tunnelPort: i.registration.tunnelPort,
      ports: i.registration.ports,
      agent: this.leases.liveness(i.registration.instanceId),
      ...(i.registration.owner === undefined ? {} : { owner: i.registration.owner }),
      appHealthy: i.appHealthy,
      healthy: this.isHealthy(i),
      since: new Date(i.changedAt).toISOString(),
    }));
  }

  close(): void {
    this.leases.close();
  }

  private add(instance: Instance): void {
    const { namespace, service, instanceId } = instance.registration;
    const skey = upstreamKey(namespace, service);
    const layoutBefore = this.layout(namespace, service);
    this.instances.set(instanceId, instance);
    this.owners.add(instanceId, instance.registration.owner);
    let ids = this.byService.get(skey);
    if (ids === undefined) {
      this.byService.set(skey, (ids = new Set()));
      this.emit({ kind: 'service', namespace, service, present: true });
    }
    ids.add(instanceId);
    this.relayout(namespace, service, layoutBefore, instanceId);
    this.emit({ kind: 'endpoint', namespace, service, key: endpointKey(instance.registration), endpoint: this.endpointOf(instance) });
  }

  /** The grace after a disconnect (or a restart) ended: the endpoint leaves the healthy set. */
  private stale(instanceId: string): void {
    const instance = this.instances.get(instanceId);
    if (instance === undefined) return;
    instance.changedAt = this.now();
    // The health it had in grace: the lease has already moved on to 'gone'.
    this.emitIfChanged(instance, { ...this.endpointOf(instance), healthy: instance.appHealthy });
  }

  /** The lease ended with no watch back: the instance goes, from every subscriber and from the store. */
  private expire(instanceId: string): void {
    const registration = this.instances.get(instanceId)?.registration;
    if (registration === undefined || !this.remove(instanceId)) return;
    this.options.onDropped?.(registration, 'lease');
  }

  private isHealthy(instance: Instance): boolean {
    return instance.appHealthy && this.leases.liveness(instance.registration.instanceId) !== 'gone';
  }

  private endpointOf(instance: Instance): Endpoint {
    const r = instance.registration;
    const targetPorts = this.layout(r.namespace, r.service).targetPorts.get(r.instanceId);
    return Object.freeze({
      address: r.address,
      tunnelPort: r.tunnelPort,
      zone: r.zone,
      healthy: this.isHealthy(instance),
      ...(targetPorts === undefined ? {} : { targetPorts }),
      ...(r.labels === undefined ? {} : { labels: r.labels }),
    });
  }

  /** The service's ports and each instance's target ports, worked out once per change (`service-ports.ts`). */
  private layout(namespace: string, service: string): ServiceLayout {
    const key = upstreamKey(namespace, service);
    let layout = this.layouts.get(key);
    if (layout === undefined) {
      const instances = [...(this.byService.get(key) ?? [])].map((id) => ({ id, ports: this.instances.get(id)?.registration.ports ?? [] }));
      const defined = this.definitions.get(key);
      layout = defined === undefined ? layoutFromRegistrations(instances) : layoutFromDefinition(defined.ports, instances);
      this.layouts.set(key, layout);
    }
    return layout;
  }

  /**
   * After a change to a service's instances or definition: a 'ports' event when its ports changed (the
   * whole upstream goes out, endpoints included), else an endpoint event for each other instance whose
   * target ports changed (`changed` has its own event). True when the ports changed.
   */
  private relayout(namespace: string, service: string, before: ServiceLayout, changed?: string): boolean {
    this.layouts.delete(upstreamKey(namespace, service));
    const after = this.layout(namespace, service);
    if (portsSignature(after.ports) !== portsSignature(before.ports)) {
      this.emit({ kind: 'ports', namespace, service });
      return true;
    }
    for (const [id, own] of after.targetPorts) {
      const instance = this.instances.get(id);
      if (id === changed || instance === undefined || sameTargetPorts(own, before.targetPorts.get(id))) continue;
      const r = instance.registration;
      this.emit({ kind: 'endpoint', namespace, service, key: endpointKey(r), endpoint: this.endpointOf(instance) });
    }
    return false;
  }

  private emitIfChanged(instance: Instance, before: Endpoint): void {
    const after = this.endpointOf(instance);
    if (after.healthy === before.healthy && after.address === before.address && after.tunnelPort === before.tunnelPort && after.zone === before.zone && sameTargetPorts(after.targetPorts, before.targetPorts) && JSON.stringify(after.labels) === JSON.stringify(before.labels)) return;
    const r = instance.registration;
    this.emit({ kind: 'endpoint', namespace: r.namespace, service: r.service, key: endpointKey(r), endpoint: after });
  }

  private emit(event: RegistryEvent): void {
    for (const listener of this.listeners) listener(event);
  }
}

function portsSignature(ports: readonly ServicePort[]): string {
  return ports.map((p) => `${p.port}>${p.targetPort}/${p.protocol}/${p.name ?? ''}`).join(',');
}

/** A definition's identity: equal signatures, nothing for watchers to hear about. */
export function definitionSignature(definition: ServiceDefinition | undefined): string {
  return definition === undefined ? '' : `${portsSignature(definition.ports)}|${definition.virtualIps.join(',')}|${String(definition.export)}`;
}
