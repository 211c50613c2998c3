/**
 * The mesh gateway, assembled: an agent in this process with the gateway's own mesh identity
 * (`spiffe://TD/ns/<namespace>/sa/<name>`), registering no app port (nothing in the mesh calls it), with
 * one loopback listener of its sidecar per destination the routes name; then the client-facing listeners.
 *
 * The config file is polled: a new file that validates is swapped in whole for new requests (routes, edge
 * checks, limits that apply per request); one with any problem is refused whole, logged with every
 * file:line:column, counted (`trellis_gateway_config_reloads_total{result="rejected"}`,
 * `trellis_gateway_config_valid 0`) and the last good one keeps serving. Listeners, the mesh section and
 * the set of destinations are fixed at start (each needs a rebind or a new registration): a reload that
 * changes them is refused with that reason.
 */
import type { AddressInfo } from 'node:net';
import type { AgentConfig, UpstreamSpec } from '../agent/config.js';
import { AGENT_DEFAULTS } from '../agent/config.js';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { configIssuesOf, formatConfigIssue } from '../common/config-issues.js';
import { pollFiles } from '../common/file-poll.js';
import type { Logger } from '../common/log.js';
import type { DestinationSpec, GatewayConfig } from './config-types.js';
import { dirname } from 'node:path';
import { loadGatewayConfig, validateGatewayValue } from './config-reader.js';
import { createEdgeChecks, type ClosableEdgeChecks } from './edge.js';
import { MeshForwarder, destinationName } from './forwarder.js';
import { startListener, type RunningListener } from './listeners.js';
import { GatewayMetrics } from './metrics.js';
import { createRequestHandler, type HandlerState } from './request-handler.js';
import { RouteTable } from './route-table.js';

export interface RunningGateway {
  /** The edge checks in force (tests wait for their key files). */
  edge(): ClosableEdgeChecks;
  readonly agent: RunningAgent;
  readonly metrics: GatewayMetrics;
  listeners(): readonly { readonly name: string; readonly address: AddressInfo }[];
  /** The config in force. */
  config(): GatewayConfig;
  /** Reads the file again now (also done on change by polling); rejects with the problems when refused. */
  reload(): Promise<void>;
  /**
   * A config given as a value (the Gateway API's, gateway/kubernetes/): validated as a file is, then
   * swapped in whole, or refused whole (rejects with the problems) and the one in force stays.
   * Seam: h-gwlive's branch brings its own `apply(value, source)` (with listeners and destinations
   * changeable); this one keeps today's rule that those need a restart.
   */
  apply(value: unknown, source: string): Promise<void>;
  stop(graceMs?: number): Promise<void>;
}

export interface GatewayOptions {
  readonly signal?: AbortSignal;
  /** How often the config file is polled for changes (default 1 s). */
  readonly pollIntervalMs?: number;
  /** Poll `config.file` (default true); false when the config comes from elsewhere (the Kubernetes API). */
  readonly pollConfigFile?: boolean;
}

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

/** Why `next` cannot replace `current` without a restart, or undefined when it can. */
function needsRestart(current: GatewayConfig, next: GatewayConfig): string | undefined {
  if (JSON.stringify(current.listeners) !== JSON.stringify(next.listeners)) return 'the listeners changed';
  if (JSON.stringify({ ...current.mesh, control: String(current.mesh.control) }) !== JSON.stringify({ ...next.mesh, control: String(next.mesh.control) })) return 'the mesh section changed';
  if (current.name !== next.name || current.namespace !== next.namespace || JSON.stringify(current.admin) !== JSON.stringify(next.admin)) return 'the identity or admin port changed';
  const have = new Set(gatewayUpstreams(current).map((u) => `${u.namespace}/${u.service}:${u.port}`));
  const added = gatewayUpstreams(next).filter((u) => !have.has(`${u.namespace}/${u.service}:${u.port}`));
  if (added.length > 0) return `new destinations (${added.map((u) => `${u.namespace}/${u.service}`).join(', ')}) need the gateway to register for them`;
  return undefined;
}

function portsOf(agent: RunningAgent): (dest: DestinationSpec) => number | undefined {
  return (dest) => {
    for (const l of agent.addresses().listeners) {
      if (l.service !== dest.service || l.namespace !== dest.namespace || l.address === undefined) continue;
      if (dest.port === undefined || l.port === dest.port) return l.address.port;
    }
    return undefined;
  };
}

export async function startGateway(initial: GatewayConfig, log: Logger, options: GatewayOptions = {}): Promise<RunningGateway> {
  const agent = await startAgent(gatewayAgentConfig(initial), log, options.signal === undefined ? {} : { signal: options.signal });
  const metrics = new GatewayMetrics(agent.registry);
  const build = (config: GatewayConfig): HandlerState & { edge: ClosableEdgeChecks } => ({ config, routes: new RouteTable(config), edge: createEdgeChecks(config, metrics, log) });
  let state = build(initial);
  const forwarder = new MeshForwarder({ ports: portsOf(agent), maxBodyBytes: () => state.config.limits.maxBodyBytes, log });
  const running: RunningListener[] = [];
  try {
    for (const spec of initial.listeners) {
      const handler = createRequestHandler({ state: () => state, forward: forwarder, metrics, log }, spec);
      running.push(await startListener(spec, initial.limits, handler, metrics, log));
    }
  } catch (err) {
    await Promise.all(running.map((l) => l.close(0)));
    await agent.stop(0);
    throw err;
  }
  const swap = (next: GatewayConfig): void => {
    const why = needsRestart(state.config, next);
    if (why !== undefined) throw new Error(`${why}: restart the gateway to apply it`);
    const old = state;
    state = build(next);
    old.edge.close();
  };
  const reload = async (): Promise<void> => swap(await loadGatewayConfig(initial.file));
  const stopPolling = options.pollConfigFile === false ? () => undefined : pollFiles({
    paths: [initial.file],
    read: async () => (await import('node:fs/promises')).readFile(initial.file, 'utf8'),
    fingerprint: (text) => text,
    onChange: () => {
      reload().then(
        () => {
          metrics.configReloads.inc({ result: 'applied' });
          metrics.configValid.set(1);
          log.info({ file: initial.file, routes: state.config.routes.length }, 'gateway config reloaded');
        },
        (err: unknown) => {
          metrics.configReloads.inc({ result: 'rejected' });
          metrics.configValid.set(0);
          const issues = configIssuesOf(err).map(formatConfigIssue);
          log.error({ file: initial.file, issues: issues.length > 0 ? issues : [(err as Error).message] }, 'gateway config rejected; the last good one stays in force');
        },
      );
    },
    onError: () => undefined,
    ...(options.pollIntervalMs === undefined ? {} : { intervalMs: options.pollIntervalMs }),
  });
  let stopping: Promise<void> | undefined;
  return {
    agent,
    metrics,
    listeners: () => running.map((l) => ({ name: l.spec.name, address: l.address() })),
    config: () => state.config,
    edge: () => state.edge,
    reload,
    apply: async (value, source) => swap(validateGatewayValue(value, source, dirname(initial.file), { emptyRoutes: true })),
    stop(graceMs = AGENT_DEFAULTS.drainGraceMs) {
      stopping ??= (async () => {
        stopPolling();
        await Promise.all(running.map((l) => l.close(graceMs)));
        state.edge.close();
        forwarder.close();
        await agent.stop(graceMs);
      })();
      return stopping;
    },
  };
}
