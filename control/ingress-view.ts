/**
 * What the watch hub tells the zone ingress (api/zone-ingress.ts): the services its zone exports, and
 * nothing else. The decision is the zone's export decision (zone-sync/exports.ts `ZoneExports`), the very
 * function the zone link publishes records by, so the ingress forwards exactly to what other zones were
 * told they can reach; the ingress itself refuses whatever is not in its table (`unknown-service`).
 *
 * The ingress's own subscription does not matter: whatever upstreams it names, it is told every exported
 * service (its wildcard view) and only those. Policy does not scope it (it never calls a service itself;
 * each destination authorizes the real caller).
 *
 * Each ingress stream remembers which services it was told (`IngressTold`, filled by its snapshot), so a
 * push sends it the whole upstream when a service becomes exported and its removal when it stops being
 * (new CONNECTs to it are then refused; the streams already spliced finish). The memory is per stream: a
 * stream opened between a change and its push already has the new state in its snapshot.
 */
import type { UpstreamService } from '../api/data-plane.js';
import type { UpstreamRef, WatchDeltaMessage } from '../api/control-protocol.js';
import { isIngressIdentity } from './reserved-identity.js';

export type ExportDecision = (namespace: string, service: string) => boolean;

/** How one service's visibility to the ingress moved since the last push. */
export type IngressStep = 'gained' | 'lost' | 'kept' | 'out';

export class IngressView {
  constructor(
    private readonly exported: ExportDecision,
    private readonly rootNamespace: string,
  ) {}

  /** Whether a subscriber is the zone ingress. */
  isIngress(subscriber: { readonly namespace: string; readonly service: string }): boolean {
    return isIngressIdentity(subscriber.namespace, subscriber.service, this.rootNamespace);
  }

  /** Whether the ingress may see the service now. */
  sees(namespace: string, service: string): boolean {
    return this.exported(namespace, service);
  }
}

/** What one ingress stream was told: the services (`namespace/service`) it holds now. */
export class IngressTold {
  private readonly told: Set<string>;

  constructor(services: readonly { readonly namespace: string; readonly name: string }[]) {
    this.told = new Set(services.map((s) => `${s.namespace}/${s.name}`));
  }

  /** Records that the service is (or is not) visible now, and how that moved since this stream was last told. */
  step(key: string, visible: boolean): IngressStep {
    const was = this.told.has(key);
    if (visible) this.told.add(key);
    else this.told.delete(key);
    return visible ? (was ? 'kept' : 'gained') : was ? 'lost' : 'out';
  }

  /**
   * This stream's line after a push about one service: the whole upstream when it became visible, its
   * removal when it stopped being, `change` (what every other stream gets, if anything) while it stays.
   */
  lineFor(key: string, visible: boolean, lines: { whole(): string; removal(): string; change(): string | undefined }): string | undefined {
    const step = this.step(key, visible);
    return step === 'gained' ? lines.whole() : step === 'lost' ? lines.removal() : step === 'kept' ? lines.change() : undefined;
  }

  /**
   * The whole decision may have moved: the delta fields that bring this stream to it over `services`
   * (`namespace/service` keys) and what it holds, or undefined when nothing moved.
   */
  recompute(services: readonly string[], sees: ExportDecision, upstream: (namespace: string, service: string) => UpstreamService): Pick<WatchDeltaMessage, 'upstreams' | 'removedUpstreams'> | undefined {
    const gained: UpstreamService[] = [];
    const lost: UpstreamRef[] = [];
    for (const key of new Set([...this.told, ...services])) {
      const slash = key.indexOf('/');
      const namespace = key.slice(0, slash);
      const service = key.slice(slash + 1);
      const step = this.step(key, sees(namespace, service));
      if (step === 'gained') gained.push(upstream(namespace, service));
      else if (step === 'lost') lost.push({ service, namespace });
    }
    if (gained.length === 0 && lost.length === 0) return undefined;
    return { ...(gained.length === 0 ? {} : { upstreams: gained }), ...(lost.length === 0 ? {} : { removedUpstreams: lost }) };
  }
}
