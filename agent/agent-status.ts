/**
 * What the agent says about itself on `/ready`, the status port and its admin port: ready only when the
 * sidecar is ready and a config is in force; otherwise the reasons. Certificates and config details go to
 * the admin port only (the status port serves `ready` and `reasons`).
 */
import type { Sidecar } from '../proxy/sidecar.js';
import type { AppHealth } from './app-health.js';
import type { ConfigInForce } from './config-in-force.js';
import type { ConfigWatch } from './config-watch.js';
import type { IdentityManager } from './identity-manager.js';

export type AgentStatus = { readonly ready: boolean; readonly reasons: readonly string[] } & Record<string, unknown>;

export interface StatusSources {
  readonly sidecar: Sidecar;
  readonly watch: ConfigWatch;
  readonly health: AppHealth | undefined;
  readonly identity: IdentityManager;
  readonly state: ConfigInForce;
  /** Extra readiness conditions (e.g. the CNI redirect check): each returns its not-ready reason, or null. */
  readonly gates: readonly (() => string | null)[];
}

export function agentStatus({ sidecar, watch, health, identity, state, gates }: StatusSources): AgentStatus {
  const side = sidecar.readiness();
  const reasons = [...side.reasons];
  const inForce = state.snapshot;
  if (inForce === undefined) reasons.push('no config from the control plane yet');
  for (const gate of gates) {
    const reason = gate();
    if (reason !== null) reasons.push(reason);
  }
  const h = identity.current;
  return {
    ready: reasons.length === 0,
    reasons,
    spiffeId: h?.spiffeId,
    certificate: h === undefined ? undefined : { notAfter: h.notAfter.toISOString(), renewalFailures: identity.failures, lastRenewalError: identity.lastError },
    controlPlane: watch.connected
      ? { connected: true, since: watch.connectedSince?.toISOString() }
      : { connected: false, since: watch.disconnectedSince?.toISOString(), lastError: watch.lastError, servingLastConfig: inForce !== undefined },
    config: { version: inForce?.version, epoch: inForce?.epoch, stale: !watch.connected || state.restoredFromDisk, restoredFromDisk: state.restoredFromDisk, waitingUpstreams: state.waiting, listenersFailing: sidecar.listenerFailures().length },
    app: health === undefined ? { healthy: true, detail: 'no app port to check' } : { healthy: health.healthy, detail: health.detail },
  };
}
