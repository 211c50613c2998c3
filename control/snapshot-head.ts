/**
 * The head of an agent's config snapshot (everything but its upstreams): the mesh's names, the agent's own
 * identity, the trust bundle, the policies of its namespace and the root namespace, and the optional
 * fields, each absent when empty so snapshots look as they did before the field existed.
 */
import type { AgentSnapshot, RevokedSerial } from '../api/control-protocol.js';
import type { TrafficPermission } from '../policy/types.js';
import type { TrafficResource } from '../policy/traffic/types.js';
import { writtenForm } from '../policy/traffic/validator.js';
import { policyRevision } from './policy-source.js';

export interface SnapshotSources {
  readonly trustDomain: string;
  readonly rootNamespace: string;
  readonly zone: string;
  readonly trustBundlePem: () => string;
  readonly policies: () => readonly TrafficPermission[];
  /** Traffic-management resources in force (every namespace's: callers need their destinations'). */
  readonly traffic?: () => readonly TrafficResource[];
  /** Unexpired certificates of revoked join tokens (token-service.ts); omitted, none. */
  readonly revokedSerials?: () => readonly RevokedSerial[];
  /** Federated trust domains' roots (multi-zone meshes whose zones have their own PKI); none when absent. */
  readonly federatedBundles?: () => Readonly<Record<string, string>>;
}

/** The policies an agent of `namespace` gets: its namespace's and the root namespace's (mesh-wide). */
export function policiesFor(sources: SnapshotSources, namespace: string): TrafficPermission[] {
  const root = sources.rootNamespace;
  return sources.policies().filter((p) => p.metadata.namespace === namespace || p.metadata.namespace === root);
}

/**
 * The traffic resources as their authors wrote them (policy/traffic `writtenForm`): each agent validates and
 * normalises them itself, and the control plane's normalised form is not something that validator reads.
 */
export function trafficAsWritten(sources: SnapshotSources): unknown[] {
  return (sources.traffic?.() ?? []).map(writtenForm);
}

export function snapshotHead(sources: SnapshotSources, self: { readonly service: string; readonly namespace: string; readonly spiffeId: string }): Omit<AgentSnapshot, 'upstreams'> {
  const policies = policiesFor(sources, self.namespace);
  const traffic = trafficAsWritten(sources);
  const revoked = sources.revokedSerials?.() ?? [];
  const bundles = sources.federatedBundles?.() ?? {};
  return {
    trustDomain: sources.trustDomain,
    rootNamespace: sources.rootNamespace,
    zone: sources.zone,
    self: { service: self.service, namespace: self.namespace, spiffeId: self.spiffeId },
    trustBundlePem: sources.trustBundlePem(),
    policies,
    policyRevision: policyRevision(policies),
    ...(traffic.length === 0 ? {} : { traffic }),
    ...(revoked.length === 0 ? {} : { revokedSerials: revoked }),
    ...(Object.keys(bundles).length === 0 ? {} : { federatedBundles: bundles }),
  };
}
