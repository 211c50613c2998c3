/**
 * What the inbound HTTP path needs for one tunnel stream: the verified caller, the inbound state in force
 * (this workload's name and the compiled policy), the app port the request is addressed to, and the
 * sidecar-wide dependencies (app connection pools, metrics, logger), built once by `createInboundHttp`.
 */
import type { Logger } from '../../../common/log.js';
import type { AppPort } from '../../../api/data-plane.js';
import type { ProxyMetrics } from '../../core/metrics.js';
import type { HttpMetrics } from '../../http/metrics.js';
import type { VerifiedPeer } from '../../core/peer-identity.js';
import type { TrackedStream } from '../authorize.js';
import type { InboundState } from '../inbound-state.js';
import type { AppHttpPools } from './app-pool.js';
import type { AppDialSource } from '../app-source.js';

/** Built once per sidecar, shared by every stream. */
export interface InboundHttpDeps {
  readonly pools: AppHttpPools;
  readonly metrics: ProxyMetrics;
  readonly httpMetrics: HttpMetrics;
  readonly logger: Logger;
  /** One info line per request (default true). */
  readonly accessLog: boolean;
  /** Largest upgrade request head read from a tunnelled upgrade stream. */
  readonly maxUpgradeHeadBytes: number;
  /** The upgrade request head must arrive within this after the CONNECT stream opens. */
  readonly upgradeHeadTimeoutMs: number;
  /** An upgraded (WebSocket) stream silent both ways this long is closed; 0 = never. */
  readonly upgradeIdleTimeoutMs: number;
  /** A request head on a lane must be complete within this from its first byte (`ProxyLimits.laneHeadTimeoutMs`). */
  readonly laneHeadTimeoutMs: number;
  /** In transparent capture: where apps off loopback are dialled from (app-source.ts). */
  readonly appSource?: AppDialSource;
  /** Open HTTP/1.1 lanes (inbound/http/lane.ts), so shutdown can drain them. */
  readonly lanes: Set<{ drain(): void }>;
  /** Registers a long-lived upgraded stream so a policy change can re-judge and cut it. */
  readonly track?: (entry: TrackedStream) => () => void;
}

/** One stream's view: small, made per stream by the tunnel. */
export interface InboundHttpContext {
  /** The caller's identity from its verified certificate. */
  readonly peer: VerifiedPeer;
  /** The state read once at the stream's start: local service, app ports, compiled policy. */
  readonly state: InboundState;
  /** The app port the request's `trellis-target` resolved to (protocol `http`). */
  readonly appPort: AppPort;
  readonly deps: InboundHttpDeps;
}
