/**
 * Authorization of one HTTP request (or tunnelled upgrade) at the inbound sidecar, before the app sees a
 * byte: the path is normalised the way the policy matches it, the policy is asked, and every denial,
 * enforced or dry-run, is counted (`trellis_policy_denials_total`) and logged with the deciding policy and rule,
 * at a bounded rate (log-sampler.ts: the first per caller and rule at once, then a count per interval).
 */
import { normalizeRequestPath } from '../../policy/http-match.js';
import type { AuthorizationRequest, Decision } from '../../policy/types.js';
import { DEFAULT_LIMITS } from '../core/limits.js';
import { LogSampler } from '../core/log-sampler.js';
import { serviceLabel } from '../core/peer-identity.js';
import { deciderOf } from './stream-refusal.js';
import type { InboundHttpContext, InboundHttpDeps } from './http-context.js';

/** One sampler per inbound HTTP path (its deps are built once per sidecar), made at its first denial. */
const denialLogs = new WeakMap<InboundHttpDeps, LogSampler>();

function denialLog(deps: InboundHttpDeps): LogSampler {
  let log = denialLogs.get(deps);
  if (log === undefined) {
    log = new LogSampler(deps.logger, DEFAULT_LIMITS.denialLogIntervalMs);
    denialLogs.set(deps, log);
  }
  return log;
}

/**
 * The target the app receives, normalised as the policy judged it (the query kept as sent); null when the
 * target is not an absolute path (or `*` for OPTIONS) or carries a broken escape.
 */
export function forwardTarget(method: string, target: string): { readonly policyPath: string; readonly forwardPath: string } | null {
  if (target === '*' && method === 'OPTIONS') return { policyPath: '*', forwardPath: target };
  const path = normalizeRequestPath(target);
  if (path === null) return null;
  const q = target.indexOf('?');
  const raw = q < 0 ? target : target.slice(0, q);
  if (raw === path) return { policyPath: path, forwardPath: target };
  return { policyPath: path, forwardPath: q < 0 ? path : path + target.slice(q) };
}

export function httpAuthorizationRequest(ctx: InboundHttpContext, method: string, policyPath: string): AuthorizationRequest {
  return { source: ctx.peer, destination: ctx.state.local, protocol: 'http', http: { method, path: policyPath } };
}

export function authorizeHttp(ctx: InboundHttpContext, request: AuthorizationRequest, correlationId: string): Decision {
  const decision = ctx.state.policy.evaluate(request);
  if (!decision.allowed || !decision.enforced) {
    const source = serviceLabel(ctx.peer);
    const destination = serviceLabel(ctx.state.local);
    const enforced = !decision.allowed;
    ctx.deps.metrics.policyDenials.inc({
      source,
      destination,
      policy: decision.policy ?? 'default-deny',
      rule: decision.rule === null ? '' : String(decision.rule),
      enforced: enforced ? 'true' : 'false',
    });
    const decidedBy = deciderOf(decision);
    denialLog(ctx.deps).warn(
      `${ctx.peer.spiffeId}|${decidedBy}|${enforced ? 'enforced' : 'dry-run'}`,
      {
        correlationId,
        source: ctx.peer.spiffeId,
        destination,
        method: request.http?.method,
        path: request.http?.path,
        policy: decision.policy,
        rule: decision.rule,
        decidedBy,
        reason: decision.reason,
        enforced,
      },
      enforced ? 'HTTP request denied by policy' : 'dry-run policy would deny HTTP request',
    );
  }
  return decision;
}
