/**
 * The sidecar's API: what the agent (and `trellis proxy run`) gives `createSidecar` and what it gets back.
 * Assembly lives in sidecar.ts; this file only names the shapes, so a reader of the API need not read the
 * wiring.
 */
import type { AddressInfo, Socket } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { AppPort, InboundMode, OutboundListener, UpstreamService, WorkloadIdentity } from '../api/data-plane.js';
import type { ProxyLimits } from './core/limits.js';
import type { ProxyMetrics } from './core/metrics.js';
import type { OriginalDestination } from './core/original-dst.js';
import type { Authorizer } from './inbound/inbound-state.js';
import type { LoadBalancingStrategy } from './outbound/tunnel-client/load-balancer.js';
import type { LocalityOptions } from './outbound/tunnel-client/locality.js';
import type { OutboundHttpLimits } from './outbound/http/deps.js';
import type { OutsideMeshPolicy } from './outbound/capture/transparent-listener.js';
import type { ListenerFailure } from './outbound/explicit-listeners.js';
import type { CompiledTraffic } from '../policy/traffic/index.js';

/** What the control plane (or a static file) says, swapped whole by `applyConfig`. */
export interface SidecarConfig {
  /** Shown on /config and as `trellis_config_info{version}`. */
  readonly version?: string;
  readonly upstreams: readonly UpstreamService[];
  readonly listeners: readonly OutboundListener[];
  /** The compiled policy (`compilePolicy(...)`) judging inbound streams and requests. */
  readonly policy: Authorizer;
  /** Replaces the app ports given at creation, when present. */
  readonly appPorts?: readonly AppPort[];
  /** Serials (`normaliseSerial`) of peer certificates refused on the tunnel: their join token was revoked. */
  readonly revokedSerials?: ReadonlySet<string>;
  /**
   * The sidecar's zone as the control plane says it, for locality (an agent without `--zone` learns it
   * from its first snapshot, after the sidecar was created); absent: `SidecarOptions.zone`.
   */
  readonly zone?: string;
  /** Routes, retries, timeouts, outlier detection, circuit breakers, zone failover (`compileTraffic(...)`); absent: the defaults. */
  readonly traffic?: CompiledTraffic;
  /**
   * Roots of the federated trust domains (trust domain → PEM), replacing the set in force when present
   * (`{}`: none); absent keeps it. New handshakes use it at once; open sessions stay, except inbound ones
   * of a trust domain no longer federated, which get GOAWAY (proxy/core/federated-trust.ts).
   */
  readonly federatedBundles?: Readonly<Record<string, string>>;
}

export interface SidecarPoolOptions {
  /**
   * Local default of zone failover (proxy/outbound/tunnel-client/locality.ts): order, per-service orders,
   * threshold. Distributed ZoneFailover rules (`SidecarConfig.traffic`) win where they apply.
   */
  readonly failover?: Omit<LocalityOptions, 'zone' | 'subzone'>;
  /** Sessions kept open per destination endpoint ahead of need (default 2). */
  readonly sessionsPerEndpoint?: number;
  /** Our bound on concurrent streams per session; another session opens when all are full (default limits.maxStreamsPerSession). */
  readonly maxStreamsPerSession?: number;
  readonly maxSessionsPerEndpoint?: number;
  readonly keepaliveIntervalMs?: number;
  readonly loadBalancing?: LoadBalancingStrategy;
}

/**
 * Transparent capture (docs/architecture.md, "Transparent capture"): the capture listeners. The iptables
 * redirect that feeds them is installed separately (`trellis agent redirect install`), and survives restarts.
 */
export interface SidecarCaptureOptions {
  /** Outbound capture listener; default 0.0.0.0:15001. */
  readonly outbound?: { readonly address?: string; readonly port?: number };
  /** Inbound capture listener; default 0.0.0.0:15006. */
  readonly inbound?: { readonly address?: string; readonly port?: number };
  /** Plaintext from outside the mesh: refused (`strict`, the default) or handed to the app (`permissive`). */
  readonly inboundMode?: InboundMode;
  /** Destinations outside the mesh: passed through (the default) or refused. */
  readonly outsideMesh?: OutsideMeshPolicy;
  /** Tests only: where a connection was going, instead of SO_ORIGINAL_DST (which needs real NAT). */
  readonly originalDst?: (socket: Socket) => OriginalDestination;
}

export interface SidecarOptions {
  readonly service: string;
  readonly namespace: string;
  readonly trustDomain: string;
  readonly zone: string;
  /** Its subzone inside the zone (`--subzone`): calls prefer endpoints labelled `trellis.dev/subzone` alike. */
  readonly subzone?: string;
  readonly identity: WorkloadIdentity;
  /** The app's ports, where the inbound side delivers. */
  readonly appPorts: readonly AppPort[];
  /** Tunnel listener; default 0.0.0.0:15008. Port 0 binds any free port (tests). */
  readonly tunnel?: { readonly address?: string; readonly port?: number };
  /** Admin listener; default 127.0.0.1:15000. `null`: no admin port. */
  readonly admin?: { readonly address?: string; readonly port?: number } | null;
  readonly limits?: Partial<ProxyLimits>;
  /** Limits of the outbound HTTP listeners (header bytes, timeouts, connections). */
  readonly httpLimits?: Partial<OutboundHttpLimits>;
  readonly pool?: SidecarPoolOptions;
  /** One info line per TCP stream and HTTP request (default true). */
  readonly accessLog?: boolean;
  /** How often free allocator memory is handed back to the kernel (core/memory-trim.ts); 0: never. Default 2 s. */
  readonly memoryTrimIntervalMs?: number;
  readonly logger?: Logger;
  /** Metrics land here; a fresh Registry when absent. Never the global default registry. */
  readonly registry?: Registry;
  /** Root namespace of mesh-wide policy, for the deny-all policy in force before the first config. */
  readonly rootNamespace?: string;
  /** Config in force from start; without it nothing is allowed in and nothing is routed out. */
  readonly config?: SidecarConfig;
  /** Transparent capture listeners; absent: explicit listeners only. */
  readonly capture?: SidecarCaptureOptions;
}

export interface SidecarAddresses {
  readonly tunnel: AddressInfo | undefined;
  readonly admin: AddressInfo | undefined;
  readonly listeners: readonly { readonly service: string; readonly namespace: string; readonly port: number; readonly address: AddressInfo | undefined }[];
  /** The capture listeners, when transparent capture is on. */
  readonly capture?: { readonly outbound: AddressInfo | undefined; readonly inbound: AddressInfo | undefined };
}

export interface Readiness {
  readonly ready: boolean;
  readonly reasons: readonly string[];
}

export interface Sidecar {
  readonly registry: Registry;
  readonly metrics: ProxyMetrics;
  /** Binds the tunnel, admin and outbound listeners and pre-opens sessions to known endpoints. */
  start(): Promise<void>;
  /**
   * Swaps upstreams, listeners, app ports and policy. Routing and policy switch synchronously when called
   * (open streams now denied are closed); the promise settles once listeners are rebound. A listener that
   * cannot bind does not fail it: it is retried with backoff and named by `readiness()` until it binds.
   */
  applyConfig(config: SidecarConfig): Promise<void>;
  /** New certificate or trust bundle: new sessions and handshakes use it at once; old sessions drain. */
  setIdentity(identity: WorkloadIdentity): void;
  /** Stops accepting, lets open connections finish for `graceMs`, then cuts what is left. */
  stop(graceMs?: number): Promise<void>;
  addresses(): SidecarAddresses;
  readiness(): Readiness;
  /** Explicit listeners of the config in force that could not bind (retried with backoff until they do). */
  listenerFailures(): readonly ListenerFailure[];
}
