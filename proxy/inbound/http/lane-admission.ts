/**
 * Admission of one request on an inbound lane (lane.ts), before the app sees a byte: the path policy
 * (authorization.ts `forwardTarget`), the policy in force when its head arrived (inbound/authorize.ts), and
 * a place among the app port's requests in flight (app-pool.ts). A refusal says what to answer on the lane;
 * an admission says what the app receives and what a policy change re-judges.
 */
import type { AppPort } from '../../../api/data-plane.js';
import type { AuthorizationRequest } from '../../../policy/types.js';
import type { VerifiedPeer } from '../../core/peer-identity.js';
import { DENIED_BY_HEADER } from '../../core/tunnel-protocol.js';
import { HTTP_FAILURES, HttpFailure } from '../../http/errors.js';
import type { RequestHead } from '../../http1/types.js';
import { deciderOf } from '../authorize.js';
import type { InboundState } from '../inbound-state.js';
import type { AppHttpPool } from './app-pool.js';
import { authorizeHttp, forwardTarget, httpAuthorizationRequest, type ResolvedAppHttpOptions } from './authorization.js';
import type { InboundHttpDeps } from './context.js';

export interface LaneRequestContext {
  readonly peer: VerifiedPeer;
  readonly state: InboundState;
  readonly appPort: AppPort;
  readonly deps: InboundHttpDeps;
  readonly options: ResolvedAppHttpOptions;
  readonly pool: AppHttpPool;
}

export type LaneAdmission =
  | { readonly allowed: false; readonly failure: HttpFailure; readonly path: string | undefined; readonly extra?: Readonly<Record<string, string>> }
  | { readonly allowed: true; readonly path: string; readonly forwardPath: string; readonly request: AuthorizationRequest };

/** Judges `head`; an admitted request holds a place in the app pool until the lane releases it. */
export function admitLaneRequest(ctx: LaneRequestContext, head: RequestHead, correlationId: string): LaneAdmission {
  const targets = forwardTarget(head.method, head.target, ctx.options);
  if (targets === null) return { allowed: false, failure: new HttpFailure(HTTP_FAILURES.badPath), path: undefined };
  const path = targets.policyPath;
  const request = httpAuthorizationRequest(ctx, head.method, path);
  const decision = authorizeHttp(ctx, request, correlationId);
  if (!decision.allowed) {
    const decider = deciderOf(decision);
    return { allowed: false, failure: new HttpFailure(HTTP_FAILURES.denied, `${decision.reason} (${decider})`), path, extra: { [DENIED_BY_HEADER]: decider } };
  }
  try {
    ctx.pool.acquire();
  } catch (err) {
    return { allowed: false, failure: err as HttpFailure, path };
  }
  return { allowed: true, path, forwardPath: targets.forwardPath, request };
}
