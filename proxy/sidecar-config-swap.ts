/**
 * The config swap: what the control plane (or a static file) says replaces the config in force whole, and
 * every part that reads it is told in one synchronous step (routing, balancing, capture, inbound state and
 * policy), so no request is judged by half of one config and half of another. Listener rebinds, which take
 * time, follow in sidecar.ts.
 */
import type { AppPort } from '../api/data-plane.js';
import type { Logger } from 'pino';
import { compilePolicy } from '../policy/compiled-policy.js';
import { DEFAULT_ROOT_NAMESPACE } from '../policy/types.js';
import { DEFAULT_TRAFFIC, type CompiledTraffic, type FailoverRules } from '../policy/traffic/index.js';
import type { ProxyMetrics } from './core/metrics.js';
import { inboundState, type InboundState } from './inbound/inbound-state.js';
import { indexUpstreams, type UpstreamIndex } from './outbound/route.js';
import type { SidecarConfig, SidecarOptions } from './sidecar-api.js';

/** The config in force and what is derived from it once per swap. */
export interface ConfigInForce {
  readonly config: SidecarConfig;
  readonly upstreams: UpstreamIndex;
  readonly state: InboundState;
}

/** The parts a swap tells, each in its own terms. */
export interface SwapTargets {
  /** `setFailover` returns whether the distributed rules override the sidecar's local failover default. */
  readonly balancer: { setServices(upstreams: SidecarConfig['upstreams']): void; setFailover(rules: FailoverRules | undefined, zone?: string): boolean };
  /** Traffic management: new requests take the new routes and settings; those in flight keep their plan. */
  readonly traffic: { setServices(upstreams: SidecarConfig['upstreams']): void; setResources(traffic: CompiledTraffic): void };
  /** Returns how many open streams the new policy closed. */
  readonly tunnel: { setState(state: InboundState): number };
  readonly capture?: {
    readonly transparent: { setUpstreams(upstreams: SidecarConfig['upstreams']): void };
    readonly inbound: { setAppPorts(ports: readonly AppPort[]): void };
  };
  readonly metrics: Pick<ProxyMetrics, 'configVersion'>;
  readonly log: Logger;
}

/** The config at creation: the one given, else deny-all with nothing routed (nothing in, nothing out). */
export function initialConfig(options: SidecarOptions): ConfigInForce {
  const denyAll = compilePolicy([], { trustDomain: options.trustDomain, rootNamespace: options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE });
  const config: SidecarConfig = options.config ?? Object.freeze({ upstreams: [], listeners: [], policy: denyAll });
  const local = { service: options.service, namespace: options.namespace };
  return { config, upstreams: indexUpstreams(config.upstreams), state: inboundState(local, config.appPorts ?? options.appPorts, config.policy, config.revokedSerials) };
}

/**
 * Replaces `current` with `config` and tells every part; `appPorts`: those given at creation, in force
 * unless the config names its own. Returns the new config in force.
 */
export function swapConfig(current: ConfigInForce, config: SidecarConfig, appPorts: readonly AppPort[], targets: SwapTargets): ConfigInForce {
  const frozen = Object.freeze({ ...config });
  const ports = frozen.appPorts ?? appPorts;
  const next: ConfigInForce = {
    config: frozen,
    upstreams: indexUpstreams(frozen.upstreams),
    state: inboundState(current.state.local, ports, frozen.policy, frozen.revokedSerials),
  };
  const traffic = frozen.traffic ?? DEFAULT_TRAFFIC;
  targets.balancer.setServices(frozen.upstreams);
  // Distributed ZoneFailover rules win over the sidecar's local default; new picks follow them at once.
  const overridden = targets.balancer.setFailover(traffic.failover, frozen.zone);
  targets.traffic.setServices(frozen.upstreams);
  targets.traffic.setResources(traffic);
  targets.capture?.transparent.setUpstreams(frozen.upstreams);
  targets.capture?.inbound.setAppPorts(ports);
  const cut = targets.tunnel.setState(next.state);
  setConfigVersion(targets.metrics, frozen.version);
  targets.log.info(
    { version: frozen.version, upstreams: frozen.upstreams.length, listeners: frozen.listeners.length, streamsClosedByPolicy: cut, zoneFailovers: traffic.failover.size, ...(overridden ? { localFailoverOverridden: true } : {}) },
    overridden ? 'config applied; its ZoneFailover rules override the local failover default where they apply' : 'config applied',
  );
  return next;
}

/** `trellis_config_info{version}`: one series, the version in force. */
export function setConfigVersion(metrics: Pick<ProxyMetrics, 'configVersion'>, version: string | undefined): void {
  metrics.configVersion.reset();
  metrics.configVersion.set({ version: version ?? 'none' }, 1);
}
