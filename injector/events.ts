/**
 * Kubernetes Events that tell a user why a pod was not injected (`kubectl describe replicaset ...`).
 *
 * Events are sent off the admission path: `report` queues and returns at once, so a slow or failing API
 * server never delays an admission response. The queue is bounded (a burst of skipped pods drops Events,
 * counted, rather than growing memory), one Event is in flight at a time, and the same reason for the same
 * object is reported once per window: a Deployment of 500 host-network pods makes one Event, not 500.
 * Never called for dry-run requests (the handler checks), since an Event is a side effect.
 *
 * The Event is about the pod's controller (ReplicaSet, Job, StatefulSet) when it has one: the pod itself
 * does not exist yet at admission and often has no name (`generateName`).
 */
import type { CoreV1Api, CoreV1Event, V1ObjectReference, V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../common/log.js';
import { describeError } from '../common/errors.js';
import type { InjectorMetrics } from './metrics.js';
import { fieldManager } from '../common/kubernetes-client.js';

export interface SkipReport {
  readonly namespace: string;
  readonly pod: V1Pod;
  /** CamelCase Event reason, e.g. InjectionSkipped. */
  readonly reason: string;
  readonly message: string;
  readonly type: 'Normal' | 'Warning';
}

/** What the admission handler needs; tests pass a recorder that collects. */
export interface EventSink {
  report(event: SkipReport): void;
}

export interface KubernetesEventSinkOptions {
  readonly api: Pick<CoreV1Api, 'createNamespacedEvent'>;
  readonly metrics: InjectorMetrics;
  readonly logger: Logger;
  /** Shown as the Event's reporting instance: the injector pod's name. */
  readonly instance: string;
  readonly maxQueued?: number;
  readonly dedupeWindowMs?: number;
  readonly now?: () => number;
}

export const REPORTING_COMPONENT = 'trellis-injector';

export function regardingObject(pod: V1Pod, namespace: string): V1ObjectReference {
  const owner = (pod.metadata?.ownerReferences ?? []).find((o) => o.controller === true) ?? pod.metadata?.ownerReferences?.[0];
  if (owner !== undefined) return { apiVersion: owner.apiVersion, kind: owner.kind, name: owner.name, namespace, uid: owner.uid };
  return { apiVersion: 'v1', kind: 'Pod', name: pod.metadata?.name ?? pod.metadata?.generateName ?? '', namespace };
}

export class KubernetesEventSink implements EventSink {
  private readonly queue: { readonly body: CoreV1Event; readonly namespace: string }[] = [];
  private readonly lastSent = new Map<string, number>();
  private sending = false;
  private idleWaiters: (() => void)[] = [];
  private readonly maxQueued: number;
  private readonly dedupeWindowMs: number;
  private readonly now: () => number;

  constructor(private readonly options: KubernetesEventSinkOptions) {
    this.maxQueued = options.maxQueued ?? 100;
    this.dedupeWindowMs = options.dedupeWindowMs ?? 5 * 60_000;
    this.now = options.now ?? Date.now;
  }

  report(event: SkipReport): void {
    const regarding = regardingObject(event.pod, event.namespace);
    const key = `${event.namespace}/${regarding.kind}/${regarding.name}/${event.reason}`;
    const now = this.now();
    const last = this.lastSent.get(key);
    if (last !== undefined && now - last < this.dedupeWindowMs) {
      this.options.metrics.events.inc({ result: 'deduplicated' });
      return;
    }
    if (this.queue.length >= this.maxQueued) {
      this.options.metrics.events.inc({ result: 'dropped' });
      return;
    }
    this.lastSent.set(key, now);
    if (this.lastSent.size > 10_000) this.forgetOld(now);
    const timestamp = new Date(now);
    this.queue.push({
      namespace: event.namespace,
      body: {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { generateName: `${regarding.name === '' ? 'pod' : regarding.name}.`, namespace: event.namespace },
        involvedObject: regarding,
        reason: event.reason,
        message: event.message,
        type: event.type,
        source: { component: REPORTING_COMPONENT },
        reportingComponent: `trellis.dev/${REPORTING_COMPONENT}`,
        reportingInstance: this.options.instance,
        firstTimestamp: timestamp,
        lastTimestamp: timestamp,
        count: 1,
      },
    });
    void this.drain();
  }

  /** Resolves once every queued Event was sent or failed (tests, and a clean shutdown). */
  idle(): Promise<void> {
    if (!this.sending && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private forgetOld(now: number): void {
    for (const [key, at] of this.lastSent) if (now - at >= this.dedupeWindowMs) this.lastSent.delete(key);
  }

  private async drain(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      for (let item = this.queue.shift(); item !== undefined; item = this.queue.shift()) {
        try {
          await this.options.api.createNamespacedEvent({ namespace: item.namespace, body: item.body, fieldManager: fieldManager('injector') });
          this.options.metrics.events.inc({ result: 'sent' });
        } catch (err) {
          this.options.metrics.events.inc({ result: 'failed' });
          this.options.logger.warn({ err: describeError(err), reason: item.body.reason, namespace: item.namespace }, 'could not record a Kubernetes Event');
        }
      }
    } finally {
      this.sending = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }
}
