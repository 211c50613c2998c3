/**
 * The gateway's agent: the config's mesh section as an agent config (the gateway's own identity, no app
 * port, nothing exported), one loopback listener of its sidecar per destination the routes name, and where
 * the forwarder finds that listener for a destination now.
 */
import type { AgentConfig, UpstreamSpec } from '../agent/config.js';
import { AGENT_DEFAULTS } from '../agent/config.js';
import type { RunningAgent } from '../agent/agent.js';
import type { DestinationSpec, GatewayConfig } from './config-types.js';
import type { DestinationPorts } from './forwarder.js';
import { destinationName } from './forwarder.js';

/** Every distinct destination of the routes, as the agent's upstreams (loopback, kernel-chosen port). */
export function gatewayUpstreams(config: GatewayConfig): UpstreamSpec[] {
  const seen = new Map<string, UpstreamSpec>();
  for (const r of config.routes) {
    const d = r.destination;
    if (d === undefined) continue;
    seen.set(destinationName(d), Object.freeze({ service: d.service, namespace: d.namespace, port: d.port, bindAddress: '127.0.0.1', localPort: 0 }));
  }
  return [...seen.values()];
}

/** The destinations of either config, each once: in force while a reload moves from one to the other. */
export function unionUpstreams(a: readonly UpstreamSpec[], b: readonly UpstreamSpec[]): UpstreamSpec[] {
  const seen = new Map<string, UpstreamSpec>();
  for (const u of [...a, ...b]) seen.set(`${u.namespace}/${u.service}:${u.port ?? ''}`, u);
  return [...seen.values()];
}

export function gatewayAgentConfig(config: GatewayConfig): AgentConfig {
  const m = config.mesh;
  return Object.freeze({
    controlUrl: m.control,
    caFile: m.caFile,
    tokenFile: m.tokenFile,
    service: config.name,
    namespace: config.namespace,
    zone: m.zone,
    // The gateway serves nothing to the mesh, so it never offers its "service" to other zones.
    export: false,
    trustDomain: m.trustDomain,
    rootNamespace: m.rootNamespace,
    appPorts: [],
    upstreams: gatewayUpstreams(config),
    dataDir: m.dataDir,
    address: undefined,
    tunnel: m.tunnel,
    admin: config.admin,
    healthCheck: null,
    status: null,
    appProbes: new Map(),
    drainGraceMs: AGENT_DEFAULTS.drainGraceMs,
    accessLog: config.accessLog,
  });
}

/** The sidecar listener serving `dest` now, read for every request (destinations come and go on reload). */
export function portsOf(agent: RunningAgent): DestinationPorts {
  return (dest: DestinationSpec) => {
    for (const l of agent.addresses().listeners) {
      if (l.service !== dest.service || l.namespace !== dest.namespace || l.address === undefined) continue;
      if (dest.port === undefined || l.port === dest.port) return l.address.port;
    }
    return undefined;
  };
}
