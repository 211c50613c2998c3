/**
 * The inbound HTTP path assembled once per sidecar: app connection pools and dependencies are built here,
 * and `dispatch` is what the tunnel server calls for each stream addressed to an `http` app port
 * (`TunnelServerOptions.http`). Per stream it only makes the small context object.
 */
import { DEFAULT_LIMITS } from '../../core/limits.js';
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Logger } from '../../../common/log.js';
import type { AppPort } from '../../../api/data-plane.js';
import type { HttpMetrics } from '../../http/metrics.js';
import type { ProxyMetrics } from '../../core/metrics.js';
import type { VerifiedPeer } from '../../core/peer-identity.js';
import type { TrackedStream } from '../authorize.js';
import type { InboundState } from '../inbound-state.js';
import { AppHttpPools, type AppPoolLimits } from './app-pool.js';
import type { InboundHttpDeps } from './context.js';
import { handleInboundHttpStream } from './request-stream.js';
import { InboundLane } from './lane.js';
import type { AppDialSource } from '../app-source.js';
import { APP_PROTOCOL_H2, APP_PROTOCOL_HEADER, LANE_HEADER, LANE_HTTP1 } from '../../core/tunnel-protocol.js';
import { DEFAULT_H2C_POOL_LIMITS, H2cAppPools, type H2cPoolLimits } from '../http2/h2c-pool.js';
import { handleInboundH2Stream } from '../http2/request-stream.js';

export interface InboundHttpOptions {
  readonly metrics: ProxyMetrics;
  readonly httpMetrics: HttpMetrics;
  readonly logger: Logger;
  /** One info line per request (default true). */
  readonly accessLog?: boolean;
  readonly appPool?: Partial<AppPoolLimits>;
  /** Default 16 KiB. */
  readonly maxUpgradeHeadBytes?: number;
  /** Default 10 s. */
  readonly upgradeHeadTimeoutMs?: number;
  /** Default 1 h. */
  readonly upgradeIdleTimeoutMs?: number;
  /** Default `DEFAULT_LIMITS.laneHeadTimeoutMs` (30 s). */
  readonly laneHeadTimeoutMs?: number;
  readonly track?: (entry: TrackedStream) => () => void;
  /** In transparent capture: where apps off loopback are dialled from (app-source.ts). */
  readonly appSource?: AppDialSource;
  /** HTTP/2 (h2c) connections to apps on http2/grpc ports (inbound/http2/h2c-pool.ts). */
  readonly h2cPool?: Partial<H2cPoolLimits>;
}

export interface InboundHttp {
  /**
   * Serves one stream for an `http` app port: a request, a CONNECT carrying an upgrade, or a CONNECT
   * opening an HTTP/1.1 lane, whose requests are judged with `current()` as each arrives.
   */
  dispatch(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, peer: VerifiedPeer, appPort: AppPort, state: InboundState, current?: () => InboundState): void;
  readonly pools: AppHttpPools;
  /** Shutdown: idle lanes close now, busy ones after their exchange. */
  drainLanes(): void;
  /** Lanes open now (the `trellis_http_lanes` gauge). */
  laneCount(): number;
  /** Closes every pooled app connection. */
  close(): void;
}

export function createInboundHttp(options: InboundHttpOptions): InboundHttp {
  const pools = new AppHttpPools(options.appPool);
  const deps: InboundHttpDeps = Object.freeze({
    pools,
    metrics: options.metrics,
    httpMetrics: options.httpMetrics,
    logger: options.logger,
    accessLog: options.accessLog ?? true,
    maxUpgradeHeadBytes: options.maxUpgradeHeadBytes ?? 16 * 1024,
    upgradeHeadTimeoutMs: options.upgradeHeadTimeoutMs ?? 10_000,
    upgradeIdleTimeoutMs: options.upgradeIdleTimeoutMs ?? 3_600_000,
    laneHeadTimeoutMs: options.laneHeadTimeoutMs ?? DEFAULT_LIMITS.laneHeadTimeoutMs,
    track: options.track,
    appSource: options.appSource,
    lanes: new Set<{ drain(): void }>(),
  });
  const h2cPools = new H2cAppPools({ ...DEFAULT_H2C_POOL_LIMITS, ...options.h2cPool }, options.appSource);
  return Object.freeze({
    pools,
    dispatch(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, peer: VerifiedPeer, appPort: AppPort, state: InboundState, current?: () => InboundState): void {
      // HTTP/2 to the app: always on http2/grpc ports, on `http` ports when the caller spoke HTTP/2.
      if (appPort.protocol !== 'http' || headers[APP_PROTOCOL_HEADER] === APP_PROTOCOL_H2) {
        handleInboundH2Stream(stream, headers, { peer, state, appPort, deps }, h2cPools);
        return;
      }
      if (headers[':method'] === 'CONNECT' && headers[LANE_HEADER] === LANE_HTTP1) {
        new InboundLane(stream, peer, appPort, current ?? (() => state), deps);
        return;
      }
      handleInboundHttpStream(stream, headers, { peer, state, appPort, deps });
    },
    drainLanes(): void {
      for (const lane of [...deps.lanes]) lane.drain();
    },
    laneCount(): number {
      return deps.lanes.size;
    },
    close(): void {
      pools.close();
      h2cPools.close();
    },
  });
}
