/**
 * The zone's service registry, fed from the Kubernetes API: Services, EndpointSlices, Pods and
 * Namespaces are watched (`reflector.ts`), each Service's desired state is worked out from them
 * (`service-endpoints.ts`), and only the difference from what was fed before goes to the registry,
 * through its public methods. The registry then tells the watch hub, which pushes deltas to agents.
 *
 * Export to other zones: the Service's `trellis.dev/export` label or annotation, else its Namespace's
 * `trellis.dev/export` label, becomes the definition's `export` word (`zone-sync/exports.ts` weighs it
 * against the zone's rules and the mesh-wide default). A value other than "true" or "false" is not
 * exported, with a warning naming the object.
 *
 * Changes are gathered for one tick, so a relist of thousands of objects, or a Deployment rolling,
 * recomputes each touched Service once. Nothing is fed until all three resources have been listed
 * once: endpoints whose pods are not known yet would look outside the mesh and flap.
 *
 * In Kubernetes mode the API is the authority for endpoints: instances fed here stay "connected" in
 * the registry for as long as their pod is in an EndpointSlice, and their health is the slice's
 * `ready` condition (which the injector's probe rewriting ties to the app's own readiness).
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { TrellisError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { StoredRegistration } from '../store.js';
import type { KubernetesMetrics } from './kubernetes-metrics.js';
import { EXPORT_LABEL, namespaceView, podView, serviceView, sliceView, type ExportWord, type NamespaceView, type PodView, type ServiceView, type SliceView } from './kubernetes-objects.js';
import { Reflector, type ReflectorOptions, type ResourceSource } from '../../common/kubernetes-reflector.js';
import { endpointSliceSource, namespaceSource, podSource, serviceSource } from './resource-sources.js';
import { definitionSignature, type ServiceDefinition } from '../registry.js';
import { desiredService } from './service-endpoints.js';
import { CODE } from '../../common/error-codes.js';

/** What the feed needs of the registry (`ServiceRegistry` has it). */
export interface RegistryTarget {
  connect(registration: StoredRegistration): number;
  setHealth(instanceId: string, healthy: boolean): unknown;
  remove(instanceId: string): boolean;
  /** The Service's own ports (port → targetPort) and cluster IPs; undefined when the Service is gone. */
  defineService(namespace: string, service: string, definition: ServiceDefinition | undefined): void;
}

export type ReflectorTuning = Pick<ReflectorOptions<unknown>, 'resyncIntervalMs' | 'backoff' | 'pageSize' | 'watchTimeoutSeconds'>;

export interface RegistryFeedOptions {
  readonly kubeConfig: KubeConfig;
  readonly registry: RegistryTarget;
  /** The mesh zone of this control plane: every endpoint fed here is in it. */
  readonly zone: string;
  readonly log: Logger;
  readonly metrics?: KubernetesMetrics;
  readonly tuning?: ReflectorTuning;
  /** Where the objects come from; default the API's Services, EndpointSlices, Pods and Namespaces. */
  readonly sources?: { readonly services: ResourceSource; readonly slices: ResourceSource; readonly pods: ResourceSource; readonly namespaces: ResourceSource };
}

interface Fed {
  definition: string;
  readonly instances: Map<string, { signature: string; healthy: boolean }>;
}

function signature(r: StoredRegistration): string {
  // Labels too: a relabelled pod (version: v2 → v3) moves between TrafficRoute backends.
  return `${r.address}|${r.tunnelPort}|${r.zone}|${r.ports.map((p) => `${p.port}/${p.protocol}/${p.name ?? ''}`).join(',')}|${JSON.stringify(r.labels ?? {})}`;
}

export class KubernetesRegistryFeed {
  private readonly services: Reflector<ServiceView>;
  private readonly slices: Reflector<SliceView>;
  private readonly pods: Reflector<PodView>;
  private readonly namespaces: Reflector<NamespaceView>;
  /** `ns/service` → the invalid export word last warned about, so the warning is logged when it changes. */
  private readonly badExport = new Map<string, string>();
  /** `ns/service` → keys of its slices. */
  private readonly slicesByService = new Map<string, Set<string>>();
  /** `ns/pod` → slice key → `ns/service`: which Services a pod change touches. */
  private readonly servicesByPod = new Map<string, Map<string, string>>();
  private readonly fed = new Map<string, Fed>();
  private readonly outsideMesh = new Map<string, number>();
  /** `ns/service` → the skipped pods' description, so a warning is logged when it changes, not on every event. */
  private readonly otherIdentity = new Map<string, string>();
  private dirty = new Set<string>();
  private flushScheduled = false;
  private closed = false;

  constructor(private readonly options: RegistryFeedOptions) {
    const kc = options.kubeConfig;
    const sources = options.sources ?? { services: serviceSource(kc), slices: endpointSliceSource(kc), pods: podSource(kc), namespaces: namespaceSource(kc) };
    const common = { kubeConfig: kc, log: options.log, ...(options.metrics === undefined ? {} : { metrics: options.metrics }), ...options.tuning };
    const synced = (): void => this.schedule();
    this.services = new Reflector<ServiceView>({
      ...common,
      source: sources.services,
      project: serviceView,
      handler: { upsert: (key) => this.touch(key), delete: (key) => this.touch(key), synced },
    });
    this.slices = new Reflector<SliceView>({
      ...common,
      source: sources.slices,
      project: sliceView,
      handler: {
        upsert: (key, slice, previous) => {
          if (previous !== undefined) this.unindex(key, previous);
          this.index(key, slice);
        },
        delete: (key, previous) => this.unindex(key, previous),
        synced,
      },
    });
    this.pods = new Reflector<PodView>({
      ...common,
      source: sources.pods,
      project: podView,
      handler: { upsert: (key) => this.touchPod(key), delete: (key) => this.touchPod(key), synced },
    });
    this.namespaces = new Reflector<NamespaceView>({
      ...common,
      source: sources.namespaces,
      project: namespaceView,
      handler: { upsert: (key) => this.touchNamespace(key), delete: (key) => this.touchNamespace(key), synced },
    });
  }

  private get reflectors(): readonly Reflector<unknown>[] {
    return [this.services, this.slices, this.pods, this.namespaces];
  }

  /** Starts the watches and resolves once every resource is listed and fed (or throws after `timeoutMs`). */
  async start(timeoutMs = 60_000): Promise<void> {
    for (const r of this.reflectors) r.start();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const pending = this.reflectors.filter((r) => !r.synced).map((r) => r.resource);
        reject(new TrellisError(CODE.K8S_SYNC_TIMEOUT, `the Kubernetes API did not list ${pending.join(', ')} within ${timeoutMs} ms (see the log for why; check RBAC: list and watch on services, endpointslices, pods, namespaces)`, { side: 'upstream', retryable: true }));
      }, timeoutMs);
    });
    try {
      await Promise.race([Promise.all(this.reflectors.map((r) => r.whenSynced())), timeout]);
    } finally {
      clearTimeout(timer);
    }
    this.flush();
  }

  get synced(): boolean {
    return this.reflectors.every((r) => r.synced);
  }

  /** Relists every resource now (the periodic resync does the same). */
  resync(): void {
    for (const r of this.reflectors) r.resync();
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.reflectors.map((r) => r.stop()));
  }

  private touch(serviceKey: string): void {
    this.dirty.add(serviceKey);
    this.schedule();
  }

  /** A namespace's export label speaks for each of its Services that has none of its own. */
  private touchNamespace(namespace: string): void {
    for (const key of this.services.keys()) if (key.startsWith(`${namespace}/`)) this.dirty.add(key);
    this.schedule();
  }

  private touchPod(podKey: string): void {
    for (const serviceKey of this.servicesByPod.get(podKey)?.values() ?? []) this.dirty.add(serviceKey);
    this.schedule();
  }

  private index(sliceKey: string, slice: SliceView): void {
    const serviceKey = `${slice.namespace}/${slice.service}`;
    let keys = this.slicesByService.get(serviceKey);
    if (keys === undefined) this.slicesByService.set(serviceKey, (keys = new Set()));
    keys.add(sliceKey);
    for (const e of slice.endpoints) {
      if (e.podName === undefined) continue;
      const podKey = `${slice.namespace}/${e.podName}`;
      let refs = this.servicesByPod.get(podKey);
      if (refs === undefined) this.servicesByPod.set(podKey, (refs = new Map()));
      refs.set(sliceKey, serviceKey);
    }
    this.touch(serviceKey);
  }

  private unindex(sliceKey: string, slice: SliceView): void {
    const serviceKey = `${slice.namespace}/${slice.service}`;
    const keys = this.slicesByService.get(serviceKey);
    keys?.delete(sliceKey);
    if (keys !== undefined && keys.size === 0) this.slicesByService.delete(serviceKey);
    for (const e of slice.endpoints) {
      if (e.podName === undefined) continue;
      const podKey = `${slice.namespace}/${e.podName}`;
      const refs = this.servicesByPod.get(podKey);
      refs?.delete(sliceKey);
      if (refs !== undefined && refs.size === 0) this.servicesByPod.delete(podKey);
    }
    this.touch(serviceKey);
  }

  private schedule(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.closed || !this.synced || this.dirty.size === 0) return;
    const dirty = this.dirty;
    this.dirty = new Set();
    const now = new Date().toISOString();
    let changes = 0;
    for (const serviceKey of dirty) changes += this.apply(serviceKey, now);
    let outside = 0;
    for (const n of this.outsideMesh.values()) outside += n;
    this.options.metrics?.endpointsOutsideMesh.set(outside);
    if (changes > 0) this.options.log.debug({ services: dirty.size, changes }, 'registry updated from the Kubernetes API');
  }

  /** Brings one Service in the registry to what the API says; returns how many registry calls it made. */
  private apply(serviceKey: string, now: string): number {
    const { registry } = this.options;
    const slash = serviceKey.indexOf('/');
    const namespace = serviceKey.slice(0, slash);
    const name = serviceKey.slice(slash + 1);
    const service = this.services.get(serviceKey);
    const fed = this.fed.get(serviceKey);
    let calls = 0;
    if (service === undefined || service.externalName) {
      if (fed === undefined) return 0;
      for (const id of fed.instances.keys()) registry.remove(id);
      registry.defineService(namespace, name, undefined);
      this.fed.delete(serviceKey);
      this.outsideMesh.delete(serviceKey);
      this.otherIdentity.delete(serviceKey);
      this.badExport.delete(serviceKey);
      this.options.metrics?.endpointsOtherIdentity.remove({ service: serviceKey });
      return fed.instances.size + 1;
    }
    const slices = [...(this.slicesByService.get(serviceKey) ?? [])].map((k) => this.slices.get(k)).filter((s): s is SliceView => s !== undefined);
    const desired = desiredService(service, slices, (ns, pod) => this.pods.get(`${ns}/${pod}`), this.options.zone, now);
    this.outsideMesh.set(serviceKey, desired.outsideMesh);
    const skipped = desired.otherIdentity.join(', ');
    if (skipped !== (this.otherIdentity.get(serviceKey) ?? '')) {
      if (skipped === '') this.otherIdentity.delete(serviceKey);
      else {
        this.otherIdentity.set(serviceKey, skipped);
        this.options.log.warn({ service: serviceKey, pods: desired.otherIdentity }, `pods of Service ${serviceKey} run as another service account and are left out: a Trellis workload is named by its service account (give the pods service account "${name}")`);
      }
    }
    this.options.metrics?.endpointsOtherIdentity.set({ service: serviceKey }, desired.otherIdentity.length);
    const current = fed ?? { definition: '', instances: new Map() };
    const exported = this.exportWord(serviceKey, service);
    const defined = exported === undefined ? desired.definition : { ...desired.definition, export: exported };
    const definition = definitionSignature(defined);
    if (definition !== current.definition) {
      registry.defineService(namespace, name, defined);
      current.definition = definition;
      calls++;
    }
    // Removals first: a new pod may have been given a departed pod's IP.
    for (const id of [...current.instances.keys()]) {
      if (desired.instances.has(id)) continue;
      registry.remove(id);
      current.instances.delete(id);
      calls++;
    }
    for (const [id, registration] of desired.instances) {
      const sig = signature(registration);
      const known = current.instances.get(id);
      if (known === undefined || known.signature !== sig) {
        registry.connect(registration);
        calls++;
      } else if (known.healthy !== registration.healthy) {
        registry.setHealth(id, registration.healthy);
        calls++;
      }
      current.instances.set(id, { signature: sig, healthy: registration.healthy });
    }
    this.fed.set(serviceKey, current);
    return calls;
  }

  /** The Service's export word, else its Namespace's; an invalid one is `false`, warned about once per change. */
  private exportWord(serviceKey: string, service: ServiceView): boolean | undefined {
    const own = service.export;
    const word: ExportWord = own !== undefined ? own : this.namespaces.get(service.namespace)?.export;
    const bad = word !== 'invalid' ? '' : own === 'invalid' ? `Service ${serviceKey}` : `Namespace ${service.namespace}`;
    if (bad !== (this.badExport.get(serviceKey) ?? '')) {
      if (bad === '') this.badExport.delete(serviceKey);
      else {
        this.badExport.set(serviceKey, bad);
        this.options.log.warn({ service: serviceKey, code: CODE.K8S_BAD_EXPORT_LABEL }, `${bad}: ${EXPORT_LABEL} is "true" or "false" (a Service's label and annotation must agree); ${serviceKey} is not exported until it is`);
      }
    }
    return word === 'invalid' ? false : word;
  }
}
