/**
 * What the inbound side consults per stream, swapped as one frozen object when config changes: this
 * workload's name, its app ports, and the compiled policy. A stream reads the state once at its start, so
 * it is judged by one consistent version even while a new one is being applied.
 */
import type { AppPort } from '../../api/data-plane.js';
import type { AuthorizationRequest, Decision } from '../../policy/types.js';

/** The compiled policy, or anything that answers like it (`CompiledPolicy#evaluate`). */
export interface Authorizer {
  evaluate(request: AuthorizationRequest): Decision;
}

export interface InboundState {
  readonly local: { readonly namespace: string; readonly service: string };
  readonly appPorts: ReadonlyMap<number, AppPort>;
  readonly policy: Authorizer;
  /** Peer certificate serials refused on the tunnel (revoked join tokens): see inbound/tunnel/revoked-peers.ts. */
  readonly revokedSerials: ReadonlySet<string>;
}

const NONE: ReadonlySet<string> = new Set();

export function inboundState(local: InboundState['local'], appPorts: readonly AppPort[], policy: Authorizer, revokedSerials: ReadonlySet<string> = NONE): InboundState {
  const ports = new Map<number, AppPort>();
  for (const p of appPorts) ports.set(p.port, Object.freeze({ ...p }));
  return Object.freeze({ local: Object.freeze({ ...local }), appPorts: ports, policy, revokedSerials });
}
