/**
 * One CONNECT stream at the inbound sidecar: authorize the caller for this workload, connect to the app
 * port, answer 200 only once the app accepted (so the caller may retry elsewhere if it did not), then
 * splice the stream and the app socket together until both sides are done.
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { ServerHttp2Stream } from 'node:http2';
import type { Logger } from 'pino';
import type { AppPort } from '../../../api/data-plane.js';
import { nextCorrelationId } from '../../core/correlation.js';
import type { ProxyLimits } from '../../core/limits.js';
import type { LogSampler } from '../../core/log-sampler.js';
import type { ProxyMetrics } from '../../core/metrics.js';
import { serviceLabel, type VerifiedPeer } from '../../core/peer-identity.js';
import { splice, type SpliceHandle, type SpliceResult } from '../../core/splice.js';
import { STATUS_OK } from '../../core/tunnel-protocol.js';
import { STREAM_REFUSALS, streamReason, type HttpFailureKind } from '../../http/errors.js';
import type { InboundState } from '../inbound-state.js';
import { appLocalAddress, type AppDialSource } from '../app-source.js';
import { refuseStream } from './stream-refusal.js';
import { authorizeInbound, deciderOf, type TrackedStream } from '../authorize.js';
import type { AuthorizationRequest } from '../../../policy/types.js';

export interface ConnectStreamDeps {
  readonly limits: ProxyLimits;
  readonly metrics: ProxyMetrics;
  readonly logger: Logger;
  /** Denials and refusals a peer can repeat at will: the first per (peer, rule or reason) now, then a count. */
  readonly denialLog: LogSampler;
  readonly accessLog: boolean;
  readonly track: (entry: TrackedStream) => () => void;
  /** In transparent capture: the address the app is dialled from when it is not on loopback (app-source.ts). */
  readonly appSource?: AppDialSource;
}

export function handleConnectStream(stream: ServerHttp2Stream, peer: VerifiedPeer, state: InboundState, appPort: AppPort, deps: ConnectStreamDeps): void {
  const correlationId = nextCorrelationId();
  const source = serviceLabel(peer);
  const destination = serviceLabel(state.local);
  const request: AuthorizationRequest = { source: peer, destination: state.local, protocol: 'tcp' };
  const decision = authorizeInbound(deps, peer, state.policy, request, correlationId, appPort.port);
  const decider = deciderOf(decision);
  if (!decision.allowed) {
    deps.metrics.tcpConnections.inc({ direction: 'inbound', source, destination, result: 'denied' });
    refuseStream(stream, STREAM_REFUSALS.policyDenied, `${decision.reason} (${decider})`, correlationId, decider);
    return;
  }

  const started = Date.now();
  const localAddress = appLocalAddress(appPort.host, deps.appSource);
  const app: Socket = netConnect({ host: appPort.host, port: appPort.port, allowHalfOpen: true, noDelay: true, ...(localAddress === undefined ? {} : { localAddress }) });
  let connected = false;
  let handle: SpliceHandle | undefined;
  let untrack: (() => void) | undefined;
  const connectTimer = setTimeout(() => {
    app.destroy();
    finishEarly(STREAM_REFUSALS.appConnectTimeout, `the app did not accept within ${deps.limits.appConnectTimeoutMs} ms`);
  }, deps.limits.appConnectTimeoutMs);

  const finishEarly = (kind: HttpFailureKind, message: string): void => {
    clearTimeout(connectTimer);
    const reason = streamReason(kind);
    deps.metrics.tcpConnections.inc({ direction: 'inbound', source, destination, result: reason });
    deps.denialLog.warn(`${peer.spiffeId}|${reason}|${appPort.port}`, { correlationId, source: peer.spiffeId, destination, port: appPort.port, reason }, `TCP stream not delivered: ${message}`);
    refuseStream(stream, kind, message, correlationId);
  };

  // The caller gave up before the app answered: drop the half-made app connection.
  const onEarlyClose = (): void => {
    if (!connected) {
      clearTimeout(connectTimer);
      app.destroy();
    }
  };
  stream.once('close', onEarlyClose);
  stream.on('error', () => undefined);

  app.once('connect', () => {
    clearTimeout(connectTimer);
    if (stream.destroyed || stream.closed) {
      app.destroy();
      return;
    }
    connected = true;
    app.removeAllListeners('error');
    deps.metrics.tcpActive.inc({ direction: 'inbound' });
    stream.respond({ ':status': STATUS_OK });
    untrack = deps.track({ request, cut: (why) => cut(why) });
    handle = splice(app, stream, deps.limits.tcpIdleTimeoutMs, onEnd);
  });
  app.once('error', (err: NodeJS.ErrnoException) => {
    if (connected) return;
    const refused = err.code === 'ECONNREFUSED';
    finishEarly(refused ? STREAM_REFUSALS.appRefused : STREAM_REFUSALS.appUnreachable, `cannot connect to the app on ${appPort.host}:${appPort.port}: ${err.code ?? err.message}`);
  });

  let cutReason: string | undefined;
  const cut = (why: string): void => {
    cutReason = why;
    handle?.cut();
  };

  const onEnd = (result: SpliceResult): void => {
    untrack?.();
    const outcome = result === 'cut' ? (cutReason ?? 'cut') : result;
    recordEnd(deps, { correlationId, peer, source, destination, port: appPort.port, app, outcome, started, decidedBy: decider });
  };
}

/** Metrics and the access line of a delivered stream, once, when both sides are done. */
function recordEnd(
  deps: ConnectStreamDeps,
  e: { correlationId: string; peer: VerifiedPeer; source: string; destination: string; port: number; app: Socket; outcome: string; started: number; decidedBy: string },
): void {
  const { metrics } = deps;
  const { source, destination, outcome } = e;
  metrics.tcpActive.dec({ direction: 'inbound' });
  const toDestination = e.app.bytesWritten;
  const toSource = e.app.bytesRead;
  metrics.tcpConnections.inc({ direction: 'inbound', source, destination, result: outcome });
  metrics.tcpBytes.inc({ direction: 'inbound', source, destination, flow: 'to_destination' }, toDestination);
  metrics.tcpBytes.inc({ direction: 'inbound', source, destination, flow: 'to_source' }, toSource);
  if (deps.accessLog) {
    deps.logger.info({ correlationId: e.correlationId, direction: 'inbound', source: e.peer.spiffeId, sourceZone: e.peer.zone ?? 'unknown', destination, port: e.port, result: outcome, bytesToDestination: toDestination, bytesToSource: toSource, durationMs: Date.now() - e.started, decidedBy: e.decidedBy }, 'tcp');
  }
}
