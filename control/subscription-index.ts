/**
 * Who listens to which service, for the watch hub: streams that name a service, streams that take every
 * service of a namespace (`ns/*`), and streams that take every service of the mesh (`*` / `*`).
 *
 * A subscription is normalised first (`normaliseSubscription`), so the three groups never share a stream
 * for one service: a named service that a wildcard of the same stream covers is dropped, and `*` / `*`
 * swallows everything else. A changed service then costs one lookup per group and each interested stream
 * is written exactly once, whatever it asked for: the fan-out stays linear in the streams that care.
 */
import { ALL_UPSTREAMS, ANY_UPSTREAM, isWildcardRef, subscriptionCovers, upstreamKey, type UpstreamRef } from '../api/control-protocol.js';

/** The smallest equivalent subscription: no duplicates, nothing a wildcard of it already covers. */
export function normaliseSubscription(refs: readonly UpstreamRef[]): readonly UpstreamRef[] {
  if (refs.some((r) => r.namespace === ANY_UPSTREAM)) return Object.freeze([ALL_UPSTREAMS]);
  const wildcards = refs.filter(isWildcardRef);
  const seen = new Set<string>();
  const kept: UpstreamRef[] = [];
  for (const ref of [...wildcards, ...refs.filter((r) => !isWildcardRef(r) && !subscriptionCovers(wildcards, r.namespace, r.service))]) {
    const key = upstreamKey(ref.namespace, ref.service);
    if (seen.has(key)) continue;
    seen.add(key);
    kept.push(Object.freeze({ service: ref.service, namespace: ref.namespace }));
  }
  return Object.freeze(kept);
}

export class SubscriptionIndex<T> {
  /** upstreamKey → streams that name the service. */
  private readonly named = new Map<string, Set<T>>();
  /** namespace → streams that take every service of it. */
  private readonly namespaces = new Map<string, Set<T>>();
  /** Streams that take every service of the mesh. */
  private readonly everything = new Set<T>();

  /** `refs` must be normalised (`normaliseSubscription`). */
  add(stream: T, refs: readonly UpstreamRef[]): void {
    for (const ref of refs) {
      if (ref.namespace === ANY_UPSTREAM) this.everything.add(stream);
      else if (isWildcardRef(ref)) addTo(this.namespaces, ref.namespace, stream);
      else addTo(this.named, upstreamKey(ref.namespace, ref.service), stream);
    }
  }

  remove(stream: T, refs: readonly UpstreamRef[]): void {
    for (const ref of refs) {
      if (ref.namespace === ANY_UPSTREAM) this.everything.delete(stream);
      else if (isWildcardRef(ref)) deleteFrom(this.namespaces, ref.namespace, stream);
      else deleteFrom(this.named, upstreamKey(ref.namespace, ref.service), stream);
    }
  }

  /** Whether any stream listens to this service, by name or by wildcard. */
  wants(namespace: string, service: string): boolean {
    return this.everything.size > 0 || this.namespaces.has(namespace) || this.named.has(upstreamKey(namespace, service));
  }

  /** The streams that name the service. */
  namedStreams(namespace: string, service: string): ReadonlySet<T> | undefined {
    return this.named.get(upstreamKey(namespace, service));
  }

  /** The groups of streams whose wildcard covers the namespace (disjoint: a stream is in one at most). */
  wildcardStreams(namespace: string): ReadonlySet<T>[] {
    const groups: ReadonlySet<T>[] = [];
    if (this.everything.size > 0) groups.push(this.everything);
    const ns = this.namespaces.get(namespace);
    if (ns !== undefined) groups.push(ns);
    return groups;
  }
}

function addTo<T>(map: Map<string, Set<T>>, key: string, stream: T): void {
  let set = map.get(key);
  if (set === undefined) map.set(key, (set = new Set()));
  set.add(stream);
}

function deleteFrom<T>(map: Map<string, Set<T>>, key: string, stream: T): void {
  const set = map.get(key);
  set?.delete(stream);
  if (set !== undefined && set.size === 0) map.delete(key);
}
