/**
 * The agent's configuration: validated once at the edge (`trellis agent run`), then frozen.
 */
import type { AppPort, InboundMode } from '../api/data-plane.js';
import type { HealthCheckSpec } from './app-health.js';
import type { AppProbeTable } from './app-probes.js';
import { AGENT_LIMITS } from './limits.js';

/**
 * One `--upstream`: a named service, or a wildcard subscription (`service: '*'`, with a namespace or
 * `'*'` for the whole mesh), which binds nothing and brings services for transparent capture only.
 */
export interface UpstreamSpec {
  /** A DNS label, or `'*'` (`ANY_UPSTREAM`): every service of `namespace`. */
  readonly service: string;
  /** A DNS label, or `'*'` with `service: '*'`: every service of the mesh. */
  readonly namespace: string;
  /** The service port to reach; absent: the service's only port. */
  readonly port: number | undefined;
  readonly bindAddress: string;
  /** Explicit mode's local port; absent: the app reaches the service through transparent capture only. */
  readonly localPort: number | undefined;
}

export interface AgentConfig {
  readonly controlUrl: URL;
  /** Roots that may have issued the control plane's certificate, for the first contact. */
  readonly caFile: string | undefined;
  readonly tokenFile: string | undefined;
  readonly service: string;
  readonly namespace: string;
  /** When set, must match the control plane's zone. */
  readonly zone: string | undefined;
  /** Workload labels (`--label version=v2`) sent with the registration, for TrafficRoute backends. */
  readonly labels?: Readonly<Record<string, string>>;
  /** `--export` / `--no-export`: this workload's word on exporting its service to other zones; undefined: none. */
  readonly export: boolean | undefined;
  /** Trust domain to ask for; absent: read from the join token, else from the roots in `caFile`. */
  readonly trustDomain: string | undefined;
  readonly rootNamespace: string;
  /**
   * The app's ports, each with how its traffic is carried: several for a pod with several ports, none for
   * a Job's pod or an app that only calls out (it then registers no port and receives nothing).
   */
  readonly appPorts: readonly AppPort[];
  readonly upstreams: readonly UpstreamSpec[];
  /** Keeps identity (key 0600) and the last snapshot here; nothing is written without it. */
  readonly dataDir: string | undefined;
  /** Address other sidecars reach this one on; absent: the tunnel host, or the address used to reach the control plane. */
  readonly address: string | undefined;
  readonly tunnel: { readonly host: string; readonly port: number };
  readonly admin: { readonly host: string; readonly port: number } | null;
  /** Of the first app port; null without app ports (nothing to check, nothing served). */
  readonly healthCheck: HealthCheckSpec | null;
  /**
   * The plaintext status port the kubelet probes (`/healthz`, `/ready`, `/app-health/...`, and a
   * loopback-only `POST /quitquitquit`); null: none (on a VM, the admin port serves the operator).
   */
  readonly status: { readonly host: string; readonly port: number } | null;
  /** The app's original probes (`--app-probes`), served on the status port; empty without the flag. */
  readonly appProbes: AppProbeTable;
  readonly drainGraceMs: number;
  /** Between golden-metrics summaries to the control plane; default `AGENT_LIMITS.summaryIntervalMs`. */
  readonly summaryIntervalMs?: number;
  readonly accessLog: boolean;
  /** Transparent capture listeners (15001, 15006); the redirect itself is `trellis agent redirect install`. */
  readonly capture?: {
    readonly inboundMode: InboundMode;
    readonly outsideMesh: 'passthrough' | 'refuse';
    readonly outbound: { readonly port: number };
    readonly inbound: { readonly port: number };
  };
}

export const AGENT_DEFAULTS = Object.freeze({
  namespace: 'default',
  tunnel: Object.freeze({ host: '0.0.0.0', port: 15008 }),
  admin: Object.freeze({ host: '127.0.0.1', port: 15000 }),
  healthIntervalMs: AGENT_LIMITS.healthIntervalMs,
  healthTimeoutMs: AGENT_LIMITS.healthTimeoutMs,
  drainGraceMs: AGENT_LIMITS.drainGraceMs,
});
