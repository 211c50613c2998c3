/**
 * The agent's view of its config: the last snapshot with every delta since applied. Deltas are applied
 * to a copy and checked before they replace anything, so a delta the agent cannot make sense of (an
 * endpoint of a service it never asked for, a version going backwards) leaves the last good config in
 * place and tells the watch to start over from a fresh snapshot.
 *
 * What "asked for" means is the subscription the agent registered with: named services, or wildcards
 * (`ns/*`, `*` / `*`) under which a delta may bring a service the agent has not seen yet, and take one
 * away (`removedUpstreams`). A removal of a service the agent does not hold is a no-op: it may have
 * joined and left the mesh within one batch of the control plane.
 */
import type { Endpoint, UpstreamService } from '../api/data-plane.js';
import { endpointKey, subscriptionCovers, upstreamKey, type AgentSnapshot, type UpstreamRef, type WatchDeltaMessage, type WatchSnapshotMessage } from '../api/control-protocol.js';
import { TrellisError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';

export interface VersionedSnapshot {
  readonly snapshot: AgentSnapshot;
  readonly version: number;
  readonly epoch: string;
}

function deltaRefused(message: string): TrellisError {
  return new TrellisError(CODE.AGENT_DELTA_REFUSED, message, { side: 'upstream', retryable: true });
}

export class ConfigState {
  private constructor(
    private snapshot: AgentSnapshot,
    private version: number,
    private readonly epoch: string,
    /** upstreamKey → endpointKey → endpoint, rebuilt into the frozen snapshot after each delta. */
    private readonly endpoints: Map<string, Map<string, Endpoint>>,
    /** What the agent registered for; a wildcard admits services that appear later. */
    private readonly subscription: readonly UpstreamRef[],
  ) {}

  /** `subscription`: the registration's upstreams; omitted, only the snapshot's services are accepted. */
  static fromSnapshot(message: Pick<WatchSnapshotMessage, 'snapshot' | 'version' | 'epoch'>, subscription: readonly UpstreamRef[] = []): ConfigState {
    const endpoints = new Map<string, Map<string, Endpoint>>();
    for (const upstream of message.snapshot.upstreams) {
      endpoints.set(upstreamKey(upstream.namespace, upstream.name), new Map(upstream.endpoints.map((e) => [endpointKey(e), e])));
    }
    return new ConfigState(message.snapshot, message.version, message.epoch, endpoints, subscription);
  }

  current(): VersionedSnapshot {
    return { snapshot: this.snapshot, version: this.version, epoch: this.epoch };
  }

  /** Applies a delta; throws TRELLIS_AGENT_DELTA_REFUSED (nothing changed) when it does not fit. */
  apply(delta: WatchDeltaMessage): void {
    if (!Number.isInteger(delta.version) || delta.version < this.version) {
      throw deltaRefused(`delta version ${delta.version} is older than the config in force (${this.version})`);
    }
    const upstreams = new Map(this.snapshot.upstreams.map((u) => [upstreamKey(u.namespace, u.name), u]));
    const touched = new Set<string>();
    const staged = new Map<string, Map<string, Endpoint>>();
    const removed = new Set<string>();
    const stage = (key: string): Map<string, Endpoint> => {
      let map = staged.get(key);
      if (map === undefined) {
        map = new Map(this.endpoints.get(key));
        staged.set(key, map);
      }
      return map;
    };
    for (const ref of delta.removedUpstreams ?? []) {
      const key = upstreamKey(ref.namespace, ref.service);
      if (upstreams.delete(key)) removed.add(key);
    }
    for (const upstream of delta.upstreams ?? []) {
      const key = upstreamKey(upstream.namespace, upstream.name);
      if (!upstreams.has(key) && !subscriptionCovers(this.subscription, upstream.namespace, upstream.name)) throw deltaRefused(`delta names upstream ${key}, which this agent does not call`);
      removed.delete(key);
      upstreams.set(key, upstream);
      staged.set(key, new Map(upstream.endpoints.map((e) => [endpointKey(e), e])));
      touched.add(key);
    }
    for (const change of delta.endpoints ?? []) {
      const key = upstreamKey(change.namespace, change.service);
      if (!upstreams.has(key)) throw deltaRefused(`delta names upstream ${key}, which this agent does not call`);
      const map = stage(key);
      if (change.set !== undefined) map.set(endpointKey(change.set), change.set);
      else if (change.remove !== undefined) map.delete(change.remove);
      touched.add(key);
    }
    for (const key of touched) {
      const base = upstreams.get(key) as UpstreamService;
      upstreams.set(key, Object.freeze({ ...base, endpoints: Object.freeze([...(staged.get(key) as Map<string, Endpoint>).values()]) }));
    }
    for (const key of removed) this.endpoints.delete(key);
    for (const [key, map] of staged) this.endpoints.set(key, map);
    this.snapshot = Object.freeze({
      ...this.snapshot,
      upstreams: touched.size === 0 && removed.size === 0 ? this.snapshot.upstreams : Object.freeze([...upstreams.values()]),
      ...(delta.policies === undefined ? {} : { policies: delta.policies, policyRevision: delta.policyRevision ?? this.snapshot.policyRevision }),
      ...(delta.traffic === undefined ? {} : { traffic: delta.traffic }),
      ...(delta.trustBundlePem === undefined ? {} : { trustBundlePem: delta.trustBundlePem }),
      ...(delta.revokedSerials === undefined ? {} : { revokedSerials: delta.revokedSerials }),
      ...(delta.federatedBundles === undefined ? {} : { federatedBundles: delta.federatedBundles }),
    });
    this.version = delta.version;
  }
}
