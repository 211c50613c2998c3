/**
 * Authorization of one HTTP request (or tunnelled upgrade) at the inbound sidecar, before the app sees a
 * byte: the path is normalised the way the policy matches it, then inbound/authorize.ts asks the policy and
 * counts and logs any denial, as it does for TCP streams.
 *
 * The path policy (as Envoy's normalize_path, merge_slashes and path_with_escaped_slashes_action): dot
 * segments resolved, slashes merged, escapes of unreserved characters decoded, other escapes uppercased;
 * refused with 400 (`TRELLIS_HTTP_BAD_PATH`): broken escapes, escaped control bytes, a raw `\`, a dot segment
 * with `;` parameters, a `#` in the target, `%2F`/`%5C` unless the port says `escapedSlashes: keep`, and
 * any `;` (path parameters, which servlet containers strip before routing) unless it says `pathParameters: keep`.
 * The app receives exactly the path that was judged, so no app can read it as another one.
 */
import type { AppHttpOptions, AppPort } from '../../../api/data-plane.js';
import { normalizeRequestPath } from '../../../policy/http-match.js';
import { DEFAULT_UPGRADE_PROTOCOLS } from '../../http/upgrade-rules.js';
import type { AuthorizationRequest, Decision } from '../../../policy/types.js';
import { DEFAULT_LIMITS } from '../../core/limits.js';
import { LogSampler } from '../../core/log-sampler.js';
import { authorizeInbound, type AuthorizationSinks } from '../authorize.js';
import type { InboundHttpContext, InboundHttpDeps } from './context.js';

/** One sampler per inbound HTTP path (its deps are built once per sidecar), made at its first denial. */
const sinks = new WeakMap<InboundHttpDeps, AuthorizationSinks>();

function sinksOf(deps: InboundHttpDeps): AuthorizationSinks {
  let out = sinks.get(deps);
  if (out === undefined) {
    out = { metrics: deps.metrics, denialLog: new LogSampler(deps.logger, DEFAULT_LIMITS.denialLogIntervalMs) };
    sinks.set(deps, out);
  }
  return out;
}

/** A port's HTTP options with every default filled in, frozen; what the inbound reads per request. */
export interface ResolvedAppHttpOptions {
  readonly upgradeProtocols: readonly string[];
  readonly escapedSlashes: 'reject' | 'keep';
  readonly pathParameters: 'reject' | 'keep';
}

/** The path policy's options: what `forwardTarget` needs of a port's options. */
export type PathPolicyOptions = Pick<ResolvedAppHttpOptions, 'escapedSlashes' | 'pathParameters'>;

export const DEFAULT_APP_HTTP_OPTIONS: ResolvedAppHttpOptions = Object.freeze({ upgradeProtocols: DEFAULT_UPGRADE_PROTOCOLS, escapedSlashes: 'reject', pathParameters: 'reject' });

/** The options in force for an app port: its own (validated where config is read) over the defaults. */
export function appHttpOptions(port: AppPort): ResolvedAppHttpOptions {
  const own: AppHttpOptions | undefined = port.http;
  if (own === undefined) return DEFAULT_APP_HTTP_OPTIONS;
  return {
    upgradeProtocols: own.upgradeProtocols ?? DEFAULT_UPGRADE_PROTOCOLS,
    escapedSlashes: own.escapedSlashes ?? 'reject',
    pathParameters: own.pathParameters ?? 'reject',
  };
}

/** After normalisation escapes are upper-case, so this finds `%2f` and `%5c` as sent too. */
const ESCAPED_SLASH = /%(?:2F|5C)/;

/**
 * The target the app receives, normalised as the policy judged it (the query kept as sent); null when the
 * path policy refuses it (see the module comment), or the target is not an absolute path (or `*` for OPTIONS).
 */
export function forwardTarget(method: string, target: string, options: PathPolicyOptions = DEFAULT_APP_HTTP_OPTIONS): { readonly policyPath: string; readonly forwardPath: string } | null {
  if (target === '*' && method === 'OPTIONS') return { policyPath: '*', forwardPath: target };
  // A request target never carries a fragment (RFC 9112 3.2); what follows `#` is read differently by apps.
  if (target.includes('#')) return null;
  const path = normalizeRequestPath(target);
  if (path === null) return null;
  if (options.escapedSlashes === 'reject' && path.includes('%') && ESCAPED_SLASH.test(path)) return null;
  if (options.pathParameters === 'reject' && path.includes(';')) return null;
  const q = target.indexOf('?');
  const raw = q < 0 ? target : target.slice(0, q);
  if (raw === path) return { policyPath: path, forwardPath: target };
  return { policyPath: path, forwardPath: q < 0 ? path : path + target.slice(q) };
}

export function httpAuthorizationRequest(ctx: InboundHttpContext, method: string, policyPath: string): AuthorizationRequest {
  return { source: ctx.peer, destination: ctx.state.local, protocol: 'http', http: { method, path: policyPath } };
}

export function authorizeHttp(ctx: InboundHttpContext, request: AuthorizationRequest, correlationId: string): Decision {
  return authorizeInbound(sinksOf(ctx.deps), ctx.peer, ctx.state.policy, request, correlationId);
}
