/**
 * The agent's configuration: validated once at the edge (`trellis agent run`), then frozen.
 */
import type { PortProtocol } from '../api/data-plane.js';
import type { HealthCheckSpec } from './app-health.js';

export interface UpstreamSpec {
  readonly service: string;
  readonly namespace: string;
  /** The service port to reach; absent: the service's only port. */
  readonly port: number | undefined;
  readonly bindAddress: string;
  readonly localPort: number;
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
  /** Trust domain to ask for; absent: read from the join token. */
  readonly trustDomain: string | undefined;
  readonly rootNamespace: string;
  readonly app: { readonly host: string; readonly port: number; readonly protocol: PortProtocol };
  readonly upstreams: readonly UpstreamSpec[];
  /** Keeps identity (key 0600) and the last snapshot here; nothing is written without it. */
  readonly dataDir: string | undefined;
  /** Address other sidecars reach this one on; absent: the tunnel host, or the address used to reach the control plane. */
  readonly address: string | undefined;
  readonly tunnel: { readonly host: string; readonly port: number };
  readonly admin: { readonly host: string; readonly port: number } | null;
  readonly healthCheck: HealthCheckSpec;
  readonly drainGraceMs: number;
  readonly accessLog: boolean;
}

export const AGENT_DEFAULTS = Object.freeze({
  namespace: 'default',
  tunnel: Object.freeze({ host: '0.0.0.0', port: 15008 }),
  admin: Object.freeze({ host: '127.0.0.1', port: 15000 }),
  healthIntervalMs: 5_000,
  healthTimeoutMs: 2_000,
  drainGraceMs: 10_000,
});
