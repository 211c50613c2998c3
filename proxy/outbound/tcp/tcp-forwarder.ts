/**
 * One app TCP connection, outbound: choose an endpoint, open a CONNECT stream on a pooled session, and
 * once the peer answers 200 (its app accepted), splice the two together.
 *
 * Retry rule: no app byte is sent on the stream before 200, so any failure before then (no session,
 * stream reset, 502/503 from the peer, timeout) is safe to retry on another endpoint, up to
 * `maxAttempts`. A 403 is a decision, not a failure: the app connection is closed and nothing is retried.
 * After 200 nothing is ever retried: bytes may have reached the app.
 */
import type { Socket } from 'node:net';
import type { ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import type { Logger } from 'pino';
import { nextCorrelationId } from '../../core/correlation.js';
import { formatAuthority } from '../../core/destination.js';
import type { ProxyLimits } from '../../core/limits.js';
import type { BalancedEndpoint, LoadBalancer } from '../tunnel-client/load-balancer.js';
import type { ProxyMetrics } from '../../core/metrics.js';
import type { PoolTarget, SessionPool } from '../tunnel-client/session-pool.js';
import { splice, type SpliceHandle, type SpliceResult } from '../../core/splice.js';
import { CORRELATION_HEADER, DENIED_BY_HEADER, RST_CANCEL, RST_REFUSED, STATUS_FORBIDDEN, STATUS_OK } from '../../core/tunnel-protocol.js';
import { routeTargetPort, type OutboundRoute } from '../route.js';
import type { OutboundTraffic } from '../traffic/outbound-traffic.js';

export interface TcpForwarderDeps {
  readonly pool: SessionPool;
  readonly balancer: LoadBalancer;
  readonly limits: ProxyLimits;
  readonly metrics: ProxyMetrics;
  readonly logger: Logger;
  /** `namespace/service` of this workload, for metrics and logs. */
  readonly sourceLabel: string;
  readonly accessLog: boolean;
  /** Endpoints tried per connection before giving up (default 3). */
  readonly maxAttempts?: number;
  /** Registers the connection so shutdown can cut it; returns the unregister function. */
  readonly track?: (cut: () => void) => () => void;
  /** Route weights, connect timeout, outlier detection and connection limits (proxy/outbound/traffic/). */
  readonly traffic?: OutboundTraffic;
}

export function forwardTcp(app: Socket, route: OutboundRoute, deps: TcpForwarderDeps): void {
  const correlationId = nextCorrelationId();
  const destination = `${route.namespace}/${route.service}`;
  const started = Date.now();
  const maxAttempts = deps.maxAttempts ?? 3;
  let tried: Set<string> | undefined;
  let attempts = 0;
  let appGone = false;
  let stream: ClientHttp2Stream | undefined;
  let handle: SpliceHandle | undefined;
  let untrack: (() => void) | undefined;

  app.setNoDelay(true);
  // Until the tunnel is up the app may only be read into the socket's own bounded buffer.
  app.pause();
  const onEarlyError = (): void => {
    appGone = true;
  };
  const onEarlyClose = (): void => {
    appGone = true;
    if (stream !== undefined && !stream.closed) stream.close(RST_CANCEL);
  };
  app.on('error', onEarlyError);
  app.once('close', onEarlyClose);
  deps.metrics.tcpActive.inc({ direction: 'outbound' });

  const plan = deps.traffic?.tcpPlan(route, deps.balancer.endpoints(route.service, route.namespace));
  const giveUp = (result: string, message: string, level: 'warn' | 'info' = 'warn'): void => {
    plan?.finish(0, 0);
    untrack?.();
    deps.metrics.tcpActive.dec({ direction: 'outbound' });
    deps.metrics.tcpConnections.inc({ direction: 'outbound', source: deps.sourceLabel, destination, result });
    deps.logger[level]({ correlationId, direction: 'outbound', destination, port: route.servicePort, result, attempts }, message);
    if (!app.destroyed) {
      if (result === 'denied') app.end();
      else if (typeof app.resetAndDestroy === 'function') app.resetAndDestroy();
      else app.destroy();
    }
  };

  const attempt = (): void => {
    if (appGone) {
      giveUp('client-closed', 'app closed the connection before the tunnel was open', 'info');
      return;
    }
    if (plan?.overflow !== undefined) {
      giveUp('circuit-breaker', `${destination}: circuit breaker ${plan.overflow}`);
      return;
    }
    const picked = deps.balancer.pick(route.service, route.namespace, tried, route.servicePort, plan?.accepts);
    if (picked === undefined || attempts >= maxAttempts) {
      giveUp(attempts === 0 ? 'no-endpoint' : 'unreachable', attempts === 0 ? `no endpoint for ${destination}` : `no endpoint of ${destination} accepted the connection`);
      return;
    }
    attempts += 1;
    deps.balancer.begin(picked);
    // Each endpoint at its own app port: instances of one service may listen on different ones.
    const port = routeTargetPort(route, picked.endpoint);
    const target: PoolTarget = { endpoint: picked.endpoint, service: route.service, namespace: route.namespace, port };
    const headers = { ':method': 'CONNECT', ':authority': formatAuthority({ service: route.service, namespace: route.namespace, port }) };
    let s: ClientHttp2Stream | undefined;
    try {
      s = deps.pool.tryOpenStream(target, headers);
    } catch (err) {
      failed(picked, 'stream-error', err);
      return;
    }
    if (s !== undefined) {
      onStream(picked, s);
      return;
    }
    deps.pool.openStream(target, headers).then(
      (opened) => onStream(picked, opened),
      (err: unknown) => failed(picked, 'unreachable', err),
    );
  };

  const failed = (picked: BalancedEndpoint, why: string, err: unknown, endpointFault = true): void => {
    deps.balancer.end(picked, !endpointFault);
    (tried ??= new Set()).add(picked.key);
    if (endpointFault) plan?.recordTry(picked.key, 'connect-failure');
    deps.logger.debug({ correlationId, endpoint: picked.key, why, err: err instanceof Error ? err.message : String(err) }, 'CONNECT attempt failed; trying another endpoint');
    attempt();
  };

  const onStream = (picked: BalancedEndpoint, s: ClientHttp2Stream): void => {
    stream = s;
    if (appGone) {
      s.close(RST_CANCEL);
      deps.balancer.end(picked, true);
      giveUp('client-closed', 'app closed the connection before the tunnel was open', 'info');
      return;
    }
    let answered = false;
    const timer = setTimeout(() => {
      if (!answered) s.close(RST_CANCEL);
    }, plan?.connectTimeoutMs ?? deps.limits.streamOpenTimeoutMs);
    s.on('error', () => undefined);
    const onPreClose = (): void => {
      clearTimeout(timer);
      if (answered) return;
      if (s.rstCode === RST_REFUSED) {
        // REFUSED_STREAM guarantees the peer did not process the stream (RFC 9113 §8.7), typically because the
        // session was draining (GOAWAY, identity rotation): the same endpoint may be tried again on another session.
        deps.balancer.end(picked, true);
        attempt();
        return;
      }
      failed(picked, `stream closed before an answer (code ${s.rstCode ?? 'none'})`, undefined);
    };
    s.once('close', onPreClose);
    s.once('response', (h: IncomingHttpHeaders) => {
      answered = true;
      clearTimeout(timer);
      s.off('close', onPreClose);
      const status = Number(h[':status']);
      if (status === STATUS_OK) {
        connected(picked, s);
        return;
      }
      s.close(RST_CANCEL);
      if (status === STATUS_FORBIDDEN) {
        deps.balancer.end(picked, true);
        const by = h[DENIED_BY_HEADER];
        giveUp('denied', `connection denied by ${destination} (${typeof by === 'string' ? by : 'policy'}; peer correlation id ${String(h[CORRELATION_HEADER] ?? '')})`);
        return;
      }
      // 5xx: this endpoint could not deliver (its app is down or overloaded): another one may.
      const endpointFault = status >= 500;
      if (endpointFault) plan?.recordTry(picked.key, 'gateway-error');
      deps.balancer.end(picked, !endpointFault);
      (tried ??= new Set()).add(picked.key);
      if (!endpointFault) {
        giveUp(`status-${status}`, `the destination sidecar refused the connection with ${status} (peer correlation id ${String(h[CORRELATION_HEADER] ?? '')})`);
        return;
      }
      attempt();
    });
  };

  const connected = (picked: BalancedEndpoint, s: ClientHttp2Stream): void => {
    app.off('error', onEarlyError);
    app.off('close', onEarlyClose);
    plan?.recordTry(picked.key, 'success');
    untrack = deps.track?.(() => handle?.cut());
    handle = splice(app, s, deps.limits.tcpIdleTimeoutMs, (result) => ended(picked, result));
    app.resume();
  };

  const ended = (picked: BalancedEndpoint, result: SpliceResult): void => {
    plan?.finish(0, 0);
    untrack?.();
    deps.balancer.end(picked, true);
    deps.metrics.tcpActive.dec({ direction: 'outbound' });
    const toDestination = app.bytesRead;
    const toSource = app.bytesWritten;
    deps.metrics.tcpConnections.inc({ direction: 'outbound', source: deps.sourceLabel, destination, result });
    deps.metrics.tcpBytes.inc({ direction: 'outbound', source: deps.sourceLabel, destination, flow: 'to_destination' }, toDestination);
    deps.metrics.tcpBytes.inc({ direction: 'outbound', source: deps.sourceLabel, destination, flow: 'to_source' }, toSource);
    if (deps.accessLog) {
      deps.logger.info({ correlationId, direction: 'outbound', destination, port: route.servicePort, endpoint: picked.key, result, attempts, bytesToDestination: toDestination, bytesToSource: toSource, durationMs: Date.now() - started }, 'tcp');
    }
  };

  attempt();
}
