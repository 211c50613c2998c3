/**
 * The mesh gateway, assembled: an agent in this process with the gateway's own mesh identity
 * (`spiffe://TD/ns/<namespace>/sa/<name>`), registering no app port (nothing in the mesh calls it), with
 * one loopback listener of its sidecar per destination the routes name (gateway-agent.ts); then the
 * client-facing listeners (listener-set.ts).
 *
 * A new config comes from the file (polled; `reload()` reads it now) or as a value (`apply`, for the
 * Gateway API): either is validated by the same readers (config-reader.ts) and put in force whole, or
 * refused whole (config-swap.ts): routes, edge checks, limits, destinations and listeners all change
 * without a restart; the mesh section, the name, namespace and admin port need one and are refused with
 * that reason. Each refusal is logged with every problem (file:line:column for a file), counted
 * (`trellis_gateway_config_reloads_total{result="rejected"}`, `trellis_gateway_config_valid 0`), and the
 * last good config keeps serving.
 */
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { AddressInfo } from 'node:net';
import { AGENT_DEFAULTS } from '../agent/config.js';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { configIssuesOf, formatConfigIssue } from '../common/config-issues.js';
import { pollFiles } from '../common/file-poll.js';
import type { Logger } from '../common/log.js';
import type { GatewayConfig } from './config-types.js';
import { loadGatewayConfig, validateGatewayValue } from './config-reader.js';
import { ConfigSwap, type GatewayState } from './config-swap.js';
import { createEdgeChecks, type ClosableEdgeChecks } from './edge.js';
import { MeshForwarder } from './forwarder.js';
import { gatewayAgentConfig, portsOf } from './gateway-agent.js';
import { ListenerSet } from './listener-set.js';
import { startListener } from './listeners.js';
import { GatewayMetrics } from './metrics.js';
import { createRequestHandler } from './request-handler.js';
import { RouteTable } from './route-table.js';

export { gatewayAgentConfig, gatewayUpstreams } from './gateway-agent.js';

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
   * Validates `value` (the file's shape, as a plain object) exactly as the file is validated, then puts it
   * in force whole or refuses it whole (config-swap.ts); `source` names it in problems and logs. Relative
   * paths resolve from the config file's directory. Rejects with `TRELLIS_CONFIG_INVALID` (every issue) or
   * `TRELLIS_GATEWAY_RELOAD_REFUSED`; the config in force is then unchanged.
   */
  apply(value: unknown, source: string): Promise<GatewayConfig>;
  stop(graceMs?: number): Promise<void>;
}

export interface GatewayOptions {
  readonly signal?: AbortSignal;
  /** How often the config file is polled for changes (default 1 s). */
  readonly pollIntervalMs?: number;
  /** Listeners and destinations removed by a reload drain their connections this long (default the agent's drain grace). */
  readonly reloadGraceMs?: number;
  /** False: the config file is not polled (configs come through `apply` only, e.g. from the Gateway API). */
  readonly watchFile?: boolean;
}

export async function startGateway(initial: GatewayConfig, log: Logger, options: GatewayOptions = {}): Promise<RunningGateway> {
  const agent = await startAgent(gatewayAgentConfig(initial), log, options.signal === undefined ? {} : { signal: options.signal });
  const metrics = new GatewayMetrics(agent.registry);
  const build = (config: GatewayConfig): GatewayState => ({ config, routes: new RouteTable(config), edge: createEdgeChecks(config, metrics, log) });
  const first = build(initial);
  const graceMs = options.reloadGraceMs ?? AGENT_DEFAULTS.drainGraceMs;
  // The handlers read the state in force per request: `configSwap` exists before any listener accepts.
  const state = (): GatewayState => configSwap.current();
  const forwarder = new MeshForwarder({ ports: portsOf(agent), maxBodyBytes: () => state().config.limits.maxBodyBytes, log });
  const listeners = new ListenerSet((spec, limits) => startListener(spec, limits, createRequestHandler({ state, forward: forwarder, metrics, log }, spec), metrics, log), log);
  const configSwap = new ConfigSwap(first, { agent, listeners, build, graceMs, log });
  try {
    (await listeners.prepare(initial)).commit(0);
  } catch (err) {
    first.edge.close();
    await agent.stop(0);
    throw err;
  }
  const put = async (load: () => Promise<GatewayConfig>, source: string): Promise<GatewayConfig> => {
    try {
      const next = await load();
      await configSwap.apply(next, source);
      metrics.configReloads.inc({ result: 'applied' });
      metrics.configValid.set(1);
      log.info({ source, routes: next.routes.length, listeners: next.listeners.length }, 'gateway config applied');
      return next;
    } catch (err) {
      // Logged before it is counted: whoever sees the gauge drop can read why.
      const issues = configIssuesOf(err).map(formatConfigIssue);
      log.error({ source, issues: issues.length > 0 ? issues : [(err as Error).message] }, 'gateway config rejected; the last good one stays in force');
      metrics.configReloads.inc({ result: 'rejected' });
      metrics.configValid.set(0);
      throw err;
    }
  };
  const reload = async (): Promise<void> => {
    await put(() => loadGatewayConfig(initial.file), initial.file);
  };
  const stopPolling = options.watchFile === false ? () => undefined : pollFiles({
    paths: [initial.file],
    read: () => readFile(initial.file, 'utf8'),
    fingerprint: (text) => text,
    onChange: () => void reload().catch(() => undefined),
    onError: () => undefined,
    ...(options.pollIntervalMs === undefined ? {} : { intervalMs: options.pollIntervalMs }),
  });
  let stopping: Promise<void> | undefined;
  return {
    agent,
    metrics,
    listeners: () => listeners.addresses(),
    config: () => state().config,
    edge: () => state().edge,
    reload,
    // A Gateway API config may have no routes yet (a Gateway before its first HTTPRoute): allowed here, not in a file.
    apply: (value, source) => put(async () => validateGatewayValue(value, source, dirname(initial.file), { emptyRoutes: true }), source),
    stop(graceMs = AGENT_DEFAULTS.drainGraceMs) {
      stopping ??= (async () => {
        stopPolling();
        await configSwap.settled();
        await listeners.close(graceMs);
        state().edge.close();
        forwarder.close();
        await agent.stop(graceMs);
      })();
      return stopping;
    },
  };
}
