/**
 * The policy format and the questions asked of it.
 *
 * A `TrafficPermission` is plain, validated, frozen JSON data: the control plane distributes it in config
 * snapshots exactly as it was parsed from a file or read from the Kubernetes API, and the receiving side
 * validates it again (`validatePolicyObjects`) before compiling it.
 */

export const POLICY_API_VERSION = 'trellis.dev/v1alpha1';
export const POLICY_KIND = 'TrafficPermission';
/** The namespace whose policies may name destinations in every namespace (Istio's convention of a root namespace). */
export const DEFAULT_ROOT_NAMESPACE = 'trellis-system';

export type PolicyAction = 'allow' | 'deny';
/** `dry-run`: denials are logged and counted but not enforced. */
export type PolicyMode = 'enforce' | 'dry-run';
/** The kind of traffic judged: a TCP stream, or an HTTP request (HTTP/1.1 or HTTP/2, gRPC included). */
export type TrafficProtocol = 'tcp' | 'http';
export type { GrpcConditions } from './grpc-match.js';
import type { GrpcConditions } from './grpc-match.js';

export interface HttpConditions {
  /** Uppercase method names; absent means any method. */
  readonly methods?: readonly string[];
  /** Exact paths, or prefixes written with a trailing `/*`; absent means any path. */
  readonly paths?: readonly string[];
}

export interface PolicyRule {
  readonly action: PolicyAction;
  /**
   * Callers, each one of: `service` (same namespace as the policy), `namespace/service`, `namespace/*`,
   * or `*` (any workload of this mesh's trust domain); or, the only way to name a caller of a federated
   * trust domain, a SPIFFE ID `spiffe://TD/ns/NS/sa/SERVICE` or pattern `spiffe://TD/ns/NS/*`, `spiffe://TD/*`.
   */
  readonly from: readonly string[];
  readonly http?: HttpConditions;
  /** gRPC services and methods (policy/grpc-match.ts); with `http` too, both must match. */
  readonly grpc?: GrpcConditions;
}

export interface TrafficPermission {
  readonly apiVersion: typeof POLICY_API_VERSION;
  readonly kind: typeof POLICY_KIND;
  readonly metadata: {
    readonly name: string;
    readonly namespace: string;
    readonly labels?: Readonly<Record<string, string>>;
    readonly annotations?: Readonly<Record<string, string>>;
  };
  readonly spec: {
    /**
     * `service` or `*` (every service of the policy's namespace). Only in the root namespace also:
     * `namespace/service`, `namespace/*`, and `*`, which there means every service of every namespace.
     */
    readonly destination: string;
    readonly mode: PolicyMode;
    readonly rules: readonly PolicyRule[];
  };
}

/** What the validator may know about the mesh beyond the policy files themselves. */
export interface ValidationContext {
  /** The protocols of a service's ports, when known; an HTTP rule aimed at a service with only TCP ports is an error. */
  portProtocols?(namespace: string, service: string): ReadonlySet<string> | undefined;
  /** Default `trellis-system`. */
  readonly rootNamespace?: string;
}

export interface CompileOptions {
  /** Callers from any other trust domain never match a rule. */
  readonly trustDomain: string;
  readonly rootNamespace: string;
}

/** A caller's identity, from the parts of its verified SPIFFE ID `spiffe://TD/ns/NS/sa/SERVICE`. */
export interface PeerIdentity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly service: string;
  /**
   * The zone the caller's certificate proves it was issued in (its zone intermediate, ca/zone.ts); absent:
   * unknown, which matches only `from` entries that name no zone.
   */
  readonly zone?: string;
}

export interface AuthorizationRequest {
  /** null: the caller presented no mesh identity. */
  readonly source: PeerIdentity | null;
  readonly destination: { readonly namespace: string; readonly service: string };
  readonly protocol: TrafficProtocol;
  /** For `http`: the request's method and path (the query string, if any, is ignored). */
  readonly http?: { readonly method: string; readonly path: string };
}

export interface Decision {
  readonly allowed: boolean;
  /** false when a dry-run policy would have denied a request that was allowed. */
  readonly enforced: boolean;
  /** "namespace/name" of the deciding policy; null when no rule matched (default deny) or the caller was refused before rules. */
  readonly policy: string | null;
  /** Index of the deciding rule in that policy's `spec.rules`. */
  readonly rule: number | null;
  readonly reason: string;
}
