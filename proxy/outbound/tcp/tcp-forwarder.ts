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
import type { RequestPlan } from '../traffic/request-plan.js';

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
  new OutboundTcpConnection(app, route, deps).attempt();
}

/** One app connection's way to an endpoint: attempts, the CONNECT answer, then the splice and its accounting. */
class OutboundTcpConnection {
  private readonly correlationId = nextCorrelationId();
  private readonly destination: string;
  private readonly started = Date.now();
  private readonly maxAttempts: number;
  /** Route weights, connect timeout, outlier detection and connection limits for this connection. */
  private readonly plan: RequestPlan | undefined;
  private tried: Set<string> | undefined;
  private attempts = 0;
  private appGone = false;
  private stream: ClientHttp2Stream | undefined;
  private handle: SpliceHandle | undefined;
  private untrack: (() => void) | undefined;

  constructor(
    private readonly app: Socket,
    private readonly route: OutboundRoute,
    private readonly deps: TcpForwarderDeps,
  ) {
    this.destination = `${route.namespace}/${route.service}`;
    this.maxAttempts = deps.maxAttempts ?? 3;
    app.setNoDelay(true);
    // Until the tunnel is up the app may only be read into the socket's own bounded buffer.
    app.pause();
    app.on('error', this.onEarlyError);
    app.once('close', this.onEarlyClose);
    deps.metrics.tcpActive.inc({ direction: 'outbound' });
    this.plan = deps.traffic?.tcpPlan(route, deps.balancer.endpoints(route.service, route.namespace));
  }

  private readonly onEarlyError = (): void => {
    this.appGone = true;
  };

  private readonly onEarlyClose = (): void => {
    this.appGone = true;
    const stream = this.stream;
    if (stream !== undefined && !stream.closed) stream.close(RST_CANCEL);
  };

  private giveUp(result: string, message: string, level: 'warn' | 'info' = 'warn'): void {
    const { app, deps } = this;
    this.plan?.finish(0, 0);
    this.untrack?.();
    deps.metrics.tcpActive.dec({ direction: 'outbound' });
    deps.metrics.tcpConnections.inc({ direction: 'outbound', source: deps.sourceLabel, destination: this.destination, result });
    deps.logger[level]({ correlationId: this.correlationId, direction: 'outbound', destination: this.destination, port: this.route.servicePort, result, attempts: this.attempts }, message);
    if (!app.destroyed) {
      if (result === 'denied') app.end();
      else if (typeof app.resetAndDestroy === 'function') app.resetAndDestroy();
      else app.destroy();
    }
  }

  attempt(): void {
    const { deps, route, destination } = this;
    if (this.appGone) {
      this.giveUp('client-closed', 'app closed the connection before the tunnel was open', 'info');
      return;
    }
    const plan = this.plan;
    if (plan?.overflow !== undefined) {
      this.giveUp('circuit-breaker', `${destination}: circuit breaker ${plan.overflow}`);
      return;
    }
    const picked = deps.balancer.pick(route.service, route.namespace, this.tried, route.servicePort, plan?.accepts);
    if (picked === undefined || this.attempts >= this.maxAttempts) {
      const first = this.attempts === 0;
      this.giveUp(first ? 'no-endpoint' : 'unreachable', first ? `no endpoint for ${destination}` : `no endpoint of ${destination} accepted the connection`);
      return;
    }
    this.attempts += 1;
    deps.balancer.begin(picked);
    // Each endpoint at its own app port: instances of one service may listen on different ones.
    const port = routeTargetPort(route, picked.endpoint);
    const target: PoolTarget = { endpoint: picked.endpoint, service: route.service, namespace: route.namespace, port };
    const headers = { ':method': 'CONNECT', ':authority': formatAuthority({ service: route.service, namespace: route.namespace, port }) };
    let s: ClientHttp2Stream | undefined;
    try {
      s = deps.pool.tryOpenStream(target, headers);
    } catch (err) {
      this.failed(picked, 'stream-error', err);
      return;
    }
    if (s !== undefined) {
      this.onStream(picked, s);
      return;
    }
    deps.pool.openStream(target, headers).then(
      (opened) => this.onStream(picked, opened),
      (err: unknown) => this.failed(picked, 'unreachable', err),
    );
  }

  private failed(picked: BalancedEndpoint, why: string, err: unknown, endpointFault = true): void {
    this.deps.balancer.end(picked, !endpointFault);
    (this.tried ??= new Set()).add(picked.key);
    if (endpointFault) this.plan?.recordTry(picked.key, 'connect-failure');
    this.deps.logger.debug({ correlationId: this.correlationId, endpoint: picked.key, why, err: err instanceof Error ? err.message : String(err) }, 'CONNECT attempt failed; trying another endpoint');
    this.attempt();
  }

  private onStream(picked: BalancedEndpoint, s: ClientHttp2Stream): void {
    this.stream = s;
    if (this.appGone) {
      s.close(RST_CANCEL);
      this.deps.balancer.end(picked, true);
      this.giveUp('client-closed', 'app closed the connection before the tunnel was open', 'info');
      return;
    }
    let answered = false;
    const timer = setTimeout(() => {
      if (!answered) s.close(RST_CANCEL);
    }, this.plan?.connectTimeoutMs ?? this.deps.limits.streamOpenTimeoutMs);
    s.on('error', () => undefined);
    const onPreClose = (): void => {
      clearTimeout(timer);
      if (answered) return;
      if (s.rstCode === RST_REFUSED) {
        // REFUSED_STREAM guarantees the peer did not process the stream (RFC 9113 §8.7), typically because the
        // session was draining (GOAWAY, identity rotation): the same endpoint may be tried again on another session.
        this.deps.balancer.end(picked, true);
        this.attempt();
        return;
      }
      this.failed(picked, `stream closed before an answer (code ${s.rstCode ?? 'none'})`, undefined);
    };
    s.once('close', onPreClose);
    s.once('response', (h: IncomingHttpHeaders) => {
      answered = true;
      clearTimeout(timer);
      s.off('close', onPreClose);
      this.onAnswer(picked, s, h);
    });
  }

  /** The peer's answer to the CONNECT: 200 connects, 403 is a decision, a 5xx lets another endpoint try. */
  private onAnswer(picked: BalancedEndpoint, s: ClientHttp2Stream, h: IncomingHttpHeaders): void {
    const { deps, destination } = this;
    const status = Number(h[':status']);
    if (status === STATUS_OK) {
      this.connected(picked, s);
      return;
    }
    s.close(RST_CANCEL);
    if (status === STATUS_FORBIDDEN) {
      deps.balancer.end(picked, true);
      const by = h[DENIED_BY_HEADER];
      this.giveUp('denied', `connection denied by ${destination} (${typeof by === 'string' ? by : 'policy'}; peer correlation id ${String(h[CORRELATION_HEADER] ?? '')})`);
      return;
    }
    // 5xx: this endpoint could not deliver (its app is down or overloaded): another one may.
    const endpointFault = status >= 500;
    if (endpointFault) this.plan?.recordTry(picked.key, 'gateway-error');
    deps.balancer.end(picked, !endpointFault);
    (this.tried ??= new Set()).add(picked.key);
    if (!endpointFault) {
      this.giveUp(`status-${status}`, `the destination sidecar refused the connection with ${status} (peer correlation id ${String(h[CORRELATION_HEADER] ?? '')})`);
      return;
    }
    this.attempt();
  }

  private connected(picked: BalancedEndpoint, s: ClientHttp2Stream): void {
    const { app } = this;
    app.off('error', this.onEarlyError);
    app.off('close', this.onEarlyClose);
    this.plan?.recordTry(picked.key, 'success');
    this.untrack = this.deps.track?.(() => this.handle?.cut());
    this.handle = splice(app, s, this.deps.limits.tcpIdleTimeoutMs, (result) => this.ended(picked, result));
    app.resume();
  }

  private ended(picked: BalancedEndpoint, result: SpliceResult): void {
    const { app, deps, destination } = this;
    this.plan?.finish(0, 0);
    this.untrack?.();
    deps.balancer.end(picked, true);
    deps.metrics.tcpActive.dec({ direction: 'outbound' });
    const toDestination = app.bytesRead;
    const toSource = app.bytesWritten;
    deps.metrics.tcpConnections.inc({ direction: 'outbound', source: deps.sourceLabel, destination, result });
    deps.metrics.tcpBytes.inc({ direction: 'outbound', source: deps.sourceLabel, destination, flow: 'to_destination' }, toDestination);
    deps.metrics.tcpBytes.inc({ direction: 'outbound', source: deps.sourceLabel, destination, flow: 'to_source' }, toSource);
    if (deps.accessLog) {
      deps.logger.info({ correlationId: this.correlationId, direction: 'outbound', destination, port: this.route.servicePort, endpoint: picked.key, result, attempts: this.attempts, bytesToDestination: toDestination, bytesToSource: toSource, durationMs: Date.now() - this.started }, 'tcp');
    }
  }
}
