/**
 * From a control-plane snapshot to the proxy's config: the policies validated again on arrival (the
 * agent trusts the control plane's transport, not its every byte) and compiled once, the upstreams as
 * sent, and one explicit outbound listener per `--upstream` whose service port is known.
 *
 * Built whole from each snapshot: under a wildcard subscription services come and go, and the proxy's
 * `applyConfig` swaps the upstream list (transparent index, balancer, pre-warmed sessions) atomically, so
 * a service that left is simply absent; a wildcard `--upstream` (`*`, `NS/*`) binds no listener.
 *
 * An `--upstream` without a port takes the service's only port; once bound, it keeps that service port
 * while the service still has it, even when another port appears (a second instance registering a
 * different app port): a caller's working listener never disappears because an instance appeared.
 */
import { normaliseSerial, type AgentSnapshot } from '../api/control-protocol.js';
import type { OutboundListener, UpstreamService } from '../api/data-plane.js';
import { compilePolicy } from '../policy/compiled-policy.js';
import { validatePolicyObjects } from '../policy/validator.js';
import { compileTraffic, validateTrafficObjects } from '../policy/traffic/index.js';
import type { SidecarConfig } from '../proxy/sidecar.js';
import { validateFederatedBundles } from '../proxy/core/federated-trust.js';
import type { AgentConfig, UpstreamSpec } from './config.js';

export interface BuiltConfig {
  readonly config: SidecarConfig;
  /** Upstreams named on the command line whose port is not known yet (no instance registered). */
  readonly waiting: readonly string[];
}

function listenerFor(spec: UpstreamSpec & { readonly localPort: number }, upstream: UpstreamService | undefined, previous: readonly OutboundListener[]): OutboundListener | string {
  const name = `${spec.namespace}/${spec.service}`;
  if (upstream === undefined || upstream.ports.length === 0) return `${name} (no instance registered yet)`;
  let port = spec.port;
  if (port === undefined) {
    const bound = previous.find((l) => l.bindAddress === spec.bindAddress && l.localPort === spec.localPort && l.service === spec.service && l.namespace === spec.namespace);
    if (bound !== undefined && upstream.ports.some((p) => p.port === bound.port)) port = bound.port;
    else if (upstream.ports.length !== 1) return `${name} (it has ports ${upstream.ports.map((p) => p.port).join(', ')}; name one with --upstream ${spec.service}:PORT=${spec.localPort})`;
    else port = (upstream.ports[0] as { port: number }).port;
  } else if (!upstream.ports.some((p) => p.port === port)) {
    return `${name} (it has no port ${port})`;
  }
  return Object.freeze({ bindAddress: spec.bindAddress, localPort: spec.localPort, service: spec.service, namespace: spec.namespace, port });
}

/** `previous`: the listeners of the config in force, so a listener without a named port keeps its service port. */
export function buildSidecarConfig(snapshot: AgentSnapshot, version: string, agent: Pick<AgentConfig, 'upstreams'>, previous: readonly OutboundListener[] = []): BuiltConfig {
  const policies = validatePolicyObjects(snapshot.policies, 'control plane snapshot', { rootNamespace: snapshot.rootNamespace });
  const policy = compilePolicy(policies, { trustDomain: snapshot.trustDomain, rootNamespace: snapshot.rootNamespace });
  // Validated again like the policies; a bad set throws, and the config in force stays (all or nothing).
  const traffic = compileTraffic(validateTrafficObjects(snapshot.traffic ?? [], 'control plane snapshot'), { rootNamespace: snapshot.rootNamespace });
  const byKey = new Map(snapshot.upstreams.map((u) => [`${u.namespace}/${u.name}`, u]));
  const listeners: OutboundListener[] = [];
  const waiting: string[] = [];
  for (const spec of agent.upstreams) {
    // Named for transparent capture only: the snapshot carries the service, no local port is bound.
    if (spec.localPort === undefined) continue;
    const built = listenerFor({ ...spec, localPort: spec.localPort }, byKey.get(`${spec.namespace}/${spec.service}`), previous);
    if (typeof built === 'string') waiting.push(built);
    else listeners.push(built);
  }
  // Revoked certificates stop mattering at their notAfter; the control plane drops them then too.
  const now = Date.now();
  const revokedSerials = new Set((snapshot.revokedSerials ?? []).filter((r) => !(Date.parse(r.notAfter) <= now)).map((r) => normaliseSerial(r.serial)));
  // Checked here too, so a set the sidecar could not use rejects the snapshot whole; `{}` clears it.
  const federatedBundles = validateFederatedBundles(snapshot.federatedBundles ?? {}, snapshot.trustDomain);
  return { config: Object.freeze({ version, zone: snapshot.zone, upstreams: snapshot.upstreams, listeners: Object.freeze(listeners), policy, revokedSerials, traffic, federatedBundles }), waiting };
}
