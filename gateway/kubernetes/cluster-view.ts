/**
 * The gateway's copy of the cluster: one reflector (list, then watch from the list's version; resume
 * after a break with backoff; relist on 410 and periodically) per kind of api-sources.ts, and one
 * callback when anything changed. The callback is coalesced: a burst of events (a relist, a
 * `kubectl apply` of many routes) is one reconcile after `settleMs` of quiet, at most `maxDelayMs` late.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { Counter, Gauge, type Registry } from 'prom-client';
import { Reflector, type ReflectorMetrics } from '../../common/kubernetes-reflector.js';
import type { Logger } from '../../common/log.js';
import type { Obj } from '../gateway-api.js';
import { GATEWAY_API_KINDS, coreSource, gatewayApiSource, projectObject, type GatewayApiPlural, type WatchedResource } from './api-sources.js';

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

const RESOURCES: readonly WatchedResource[] = [...(Object.keys(GATEWAY_API_KINDS) as GatewayApiPlural[]), 'secrets', 'services', 'namespaces'];

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
  private readonly reflectors = new Map<WatchedResource, Reflector<Obj>>();
  private readonly objects = new Map<WatchedResource, Map<string, Obj>>();
  private timer: NodeJS.Timeout | undefined;
  private firstPending = 0;

  constructor(private readonly options: ClusterViewOptions) {
    const metrics = reflectorMetrics(options.registry);
    for (const resource of RESOURCES) {
      const kept = new Map<string, Obj>();
      this.objects.set(resource, kept);
      const source = resource === 'secrets' || resource === 'services' || resource === 'namespaces' ? coreSource(options.kubeConfig, resource) : gatewayApiSource(options.kubeConfig, resource);
      this.reflectors.set(resource, new Reflector<Obj>({
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
        },
        log: options.log,
        metrics,
        ...(options.backoff === undefined ? {} : { backoff: options.backoff }),
        ...(options.resyncIntervalMs === undefined ? {} : { resyncIntervalMs: options.resyncIntervalMs }),
      }));
    }
  }

  start(): void {
    for (const r of this.reflectors.values()) r.start();
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
    return Object.fromEntries(RESOURCES.map((r) => [r, new Map(this.objects.get(r))])) as unknown as Snapshot;
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    await Promise.all([...this.reflectors.values()].map((r) => r.stop()));
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
