/**
 * The gateway's copy of the cluster: one reflector (list, then watch from the list's version; resume
 * after a break with backoff; relist on 410 and periodically) per kind of api-sources.ts, one more per
 * namespace whose TLS Secrets are needed (`watchSecretsIn`, started and stopped as the Gateway's
 * certificateRefs change), and one callback when anything changed. The callback is coalesced: a burst of events (a relist, a
 * `kubectl apply` of many routes) is one reconcile after `settleMs` of quiet, at most `maxDelayMs` late.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { Counter, Gauge, type Registry } from 'prom-client';
import { Reflector, type ReflectorMetrics, type ResourceSource } from '../../common/kubernetes-reflector.js';
import type { Logger } from '../../common/log.js';
import type { Obj } from '../gateway-api.js';
import { GATEWAY_API_KINDS, coreSource, gatewayApiSource, projectObject, secretSource, type ClusterResource, type GatewayApiPlural, type WatchedResource } from './api-sources.js';

export interface ClusterViewOptions {
  readonly kubeConfig: KubeConfig;
  readonly log: Logger;
  readonly registry: Registry;
  readonly onChange: () => void;
  readonly settleMs?: number;
  readonly maxDelayMs?: number;
  /** Reflector backoff after a failed list or watch (default 0.5 s doubling to 30 s). */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  readonly resyncIntervalMs?: number;
}

export type Snapshot = Readonly<Record<WatchedResource, ReadonlyMap<string, Obj>>>;

const RESOURCES: readonly ClusterResource[] = [...(Object.keys(GATEWAY_API_KINDS) as GatewayApiPlural[]), 'services', 'namespaces'];

function reflectorMetrics(registry: Registry): ReflectorMetrics {
  const registers = [registry];
  return {
    watchEvents: new Counter({ name: 'trellis_gateway_k8s_watch_events_total', help: 'Watch events received from the Kubernetes API, by resource and type', labelNames: ['resource', 'type'], registers }),
    relists: new Counter({ name: 'trellis_gateway_k8s_relists_total', help: 'Full lists of a resource, by reason: start, expired (410 Gone), resync, error', labelNames: ['resource', 'reason'], registers }),
    watchErrors: new Counter({ name: 'trellis_gateway_k8s_watch_errors_total', help: 'Failed lists or watches (retried with backoff)', labelNames: ['resource'], registers }),
    synced: new Gauge({ name: 'trellis_gateway_k8s_synced', help: '1 once the resource has been listed and is being watched; 0 while it is failing', labelNames: ['resource'], registers }),
  };
}

export class ClusterView {
  private readonly reflectors = new Map<ClusterResource, Reflector<Obj>>();
  private readonly objects = new Map<ClusterResource, Map<string, Obj>>();
  /** Per namespace: its TLS Secrets' reflector and copy. */
  private readonly secrets = new Map<string, { reflector: Reflector<Obj>; kept: Map<string, Obj> }>();
  private readonly metrics: ReflectorMetrics;
  private timer: NodeJS.Timeout | undefined;
  private firstPending = 0;
  private stopped = false;

  constructor(private readonly options: ClusterViewOptions) {
    this.metrics = reflectorMetrics(options.registry);
    for (const resource of RESOURCES) {
      const kept = new Map<string, Obj>();
      this.objects.set(resource, kept);
      const source = resource === 'services' || resource === 'namespaces' ? coreSource(options.kubeConfig, resource) : gatewayApiSource(options.kubeConfig, resource);
      this.reflectors.set(resource, this.reflector(resource, source, kept));
    }
  }

  private reflector(resource: WatchedResource, source: ResourceSource, kept: Map<string, Obj>): Reflector<Obj> {
    const { options } = this;
    return new Reflector<Obj>({
      kubeConfig: options.kubeConfig,
      source,
      project: (raw) => projectObject(resource, raw),
      handler: {
        upsert: (key, value) => {
          kept.set(key, value);
          this.changed();
        },
        delete: (key) => {
          kept.delete(key);
          this.changed();
        },
        // A first list that found nothing still changes what the plan may conclude.
        synced: () => this.changed(),
      },
      log: options.log,
      metrics: this.metrics,
      ...(options.backoff === undefined ? {} : { backoff: options.backoff }),
      ...(options.resyncIntervalMs === undefined ? {} : { resyncIntervalMs: options.resyncIntervalMs }),
    });
  }

  start(): void {
    for (const r of this.reflectors.values()) r.start();
  }

  /**
   * Watches the TLS Secrets of exactly these namespaces (starting and stopping reflectors); true when
   * all of them have been listed, so a plan does not call a Secret missing that is merely not read yet.
   */
  watchSecretsIn(namespaces: ReadonlySet<string>): boolean {
    if (this.stopped) return false;
    for (const [ns, entry] of this.secrets) {
      if (namespaces.has(ns)) continue;
      this.secrets.delete(ns);
      void entry.reflector.stop();
    }
    for (const ns of namespaces) {
      if (this.secrets.has(ns)) continue;
      const kept = new Map<string, Obj>();
      const reflector = this.reflector('secrets', secretSource(this.options.kubeConfig, ns), kept);
      this.secrets.set(ns, { reflector, kept });
      reflector.start();
    }
    return [...namespaces].every((ns) => this.secrets.get(ns)?.reflector.synced === true);
  }

  /** Resolves once every kind has been listed once (the first reconcile must not see a half-read cluster). */
  async whenSynced(): Promise<void> {
    await Promise.all([...this.reflectors.values()].map((r) => r.whenSynced()));
  }

  /** Kinds not listed yet (for the log while start-up waits). */
  unsynced(): string[] {
    return [...this.reflectors.values()].filter((r) => !r.synced).map((r) => r.resource);
  }

  snapshot(): Snapshot {
    const secrets = new Map([...this.secrets.values()].flatMap((s) => [...s.kept]));
    return { ...Object.fromEntries(RESOURCES.map((r) => [r, new Map(this.objects.get(r))])), secrets } as unknown as Snapshot;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await Promise.all([...this.reflectors.values(), ...[...this.secrets.values()].map((s) => s.reflector)].map((r) => r.stop()));
  }

  private changed(): void {
    const settle = this.options.settleMs ?? 100;
    const now = Date.now();
    if (this.timer === undefined) this.firstPending = now;
    clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(settle, this.firstPending + (this.options.maxDelayMs ?? 1_000) - now));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.options.onChange();
    }, wait);
  }
}
