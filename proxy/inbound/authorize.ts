/**
 * Inbound authorization, one for every protocol: a TCP stream (inbound/tcp/connect-stream.ts), an HTTP
 * request, a lane request and a tunnelled upgrade (inbound/http/) all ask `authorizeInbound` before the app
 * sees a byte. It asks the policy in force and counts and logs every denial the same way, enforced or
 * dry-run: `trellis_policy_denials_total` by deciding policy and rule, and one warning per caller, decider
 * and mode at a bounded rate (core/log-sampler.ts). What the caller is told is the protocol's own business
 * (a 403 stream refusal or a 403 HTTP response, both naming the decider in `trellis-denied-by`).
 *
 * Like linkerd2-proxy's inbound `policy/authorize` (one authorization and one metrics type beside thin
 * TCP and HTTP adapters), written for this proxy.
 */
import type { AuthorizationRequest, Decision } from '../../policy/types.js';
import type { LogSampler } from '../core/log-sampler.js';
import type { ProxyMetrics } from '../core/metrics.js';
import { serviceLabel, type VerifiedPeer } from '../core/peer-identity.js';
import { zoneLabel } from '../core/zone-label.js';

/** What denials are counted in: the one counter both protocols share. */
export type AuthorizationMetrics = Pick<ProxyMetrics, 'policyDenials'>;

/** Where denials go: the counter and the rate-bounded warning log. */
export interface AuthorizationSinks {
  readonly metrics: AuthorizationMetrics;
  readonly denialLog: LogSampler;
}

/** An open stream the tunnel server tracks, so a policy change can re-judge it and shutdown can cut it. */
export interface TrackedStream {
  readonly request: AuthorizationRequest;
  cut(reason: string): void;
}

/** `<namespace>/<policy>#<rule>`, or `default-deny` when no rule matched. */
export function deciderOf(decision: { readonly policy: string | null; readonly rule: number | null }): string {
  if (decision.policy === null) return 'default-deny';
  return decision.rule === null ? decision.policy : `${decision.policy}#${decision.rule}`;
}

/**
 * The policy's decision for `request` from the verified `peer`; a denial (or a dry-run one) is counted and
 * logged here. `port` is the app port, named in the log line of a TCP denial.
 */
export function authorizeInbound(sinks: AuthorizationSinks, peer: VerifiedPeer, policy: { evaluate(request: AuthorizationRequest): Decision }, request: AuthorizationRequest, correlationId: string, port?: number): Decision {
  const decision = policy.evaluate(request);
  if (!decision.allowed || !decision.enforced) recordDenial(sinks, peer, request, decision, correlationId, port);
  return decision;
}

function recordDenial(sinks: AuthorizationSinks, peer: VerifiedPeer, request: AuthorizationRequest, decision: Decision, correlationId: string, port: number | undefined): void {
  const source = serviceLabel(peer);
  const destination = serviceLabel(request.destination);
  const enforced = !decision.allowed;
  sinks.metrics.policyDenials.inc({
    source,
    source_zone: zoneLabel(peer.zone),
    destination,
    policy: decision.policy ?? 'default-deny',
    rule: decision.rule === null ? '' : String(decision.rule),
    enforced: enforced ? 'true' : 'false',
  });
  const decidedBy = deciderOf(decision);
  const what = request.protocol === 'http' ? 'HTTP request' : 'TCP stream';
  const fields: Record<string, unknown> = { correlationId, source: peer.spiffeId, sourceZone: peer.zone ?? 'unknown', destination, policy: decision.policy, rule: decision.rule, decidedBy, reason: decision.reason, enforced };
  if (request.http !== undefined) {
    fields.method = request.http.method;
    fields.path = request.http.path;
  }
  if (port !== undefined) fields.port = port;
  sinks.denialLog.warn(`${peer.spiffeId}|${decidedBy}|${enforced ? 'enforced' : 'dry-run'}`, fields, enforced ? `${what} denied by policy` : `dry-run policy would deny ${what}`);
}
