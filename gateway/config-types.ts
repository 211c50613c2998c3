/**
 * The mesh gateway's configuration (`trellis gateway run --config FILE`), as validated and frozen by
 * config-reader.ts. Shapes only: the reader checks every field once, with file:line:column errors, and
 * nothing downstream validates again.
 */
import type { HeaderEdits, RouteMatch } from '../policy/traffic/types.js';

export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

/** One operator certificate: the hosts it serves by SNI (exact or `*.suffix`), files as absolute paths. */
export interface CertificateSpec {
  readonly hosts: readonly string[];
  readonly certificate: string;
  readonly key: string;
}

export interface ListenerSpec {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly protocol: 'http' | 'https';
  /** With `https` only. */
  readonly tls?: {
    readonly certificates: readonly CertificateSpec[];
    readonly minVersion: TlsVersion;
    /** Client-certificate authentication: the CA file clients' certificates must chain to. */
    readonly clientCertificate?: { readonly caFile: string; readonly required: boolean };
  };
}

export interface DestinationSpec {
  readonly service: string;
  readonly namespace: string;
  /** The service port; absent: the service's only port. */
  readonly port: number | undefined;
}

export interface RedirectSpec {
  readonly scheme?: 'http' | 'https';
  readonly host?: string;
  readonly port?: number;
  /** Replaces the whole path. */
  readonly path?: string;
  readonly status: 301 | 302 | 303 | 307 | 308;
}

/** Rewrites the matched path prefix (`prefix`) or the whole path (`path`) before forwarding. */
export type RewriteSpec = { readonly prefix: string } | { readonly path: string };

export interface JwtRouteSpec {
  /** The provider (`jwtProviders[].name`) whose keys, issuer and audiences judge the token. */
  readonly provider: string;
  /** Claims that must be present; with a value, equal to it (strings, or arrays containing it). */
  readonly requiredClaims: Readonly<Record<string, string | null>>;
  /** Claim → request header the app receives (the client's own copies are removed first). */
  readonly claimHeaders: Readonly<Record<string, string>>;
}

export interface JwtProviderSpec {
  readonly name: string;
  readonly issuer: string;
  readonly audiences: readonly string[];
  /**
   * Keys: a JWKS file (re-read when it changes) or an HTTPS URL (fetched, cached, refreshed; jwks-remote.ts),
   * its server's certificate checked against `caFile` when given, else the system roots.
   */
  readonly jwks: { readonly file: string } | { readonly url: string; readonly caFile?: string };
  /** How often the JWKS is fetched again (1 s to 24 h). */
  readonly refreshMs: number;
  /** Clock skew allowed on exp/nbf/iat. */
  readonly clockSkewMs: number;
  /** Signature algorithms accepted; never `none` nor HMAC (keys are public). */
  readonly algorithms: readonly string[];
}

export interface RateLimitSpec {
  /** Tokens added per second, and the bucket size (a burst). */
  readonly perSecond: number;
  readonly burst: number;
  /** What a bucket is per: the client's address, or a claim of its verified JWT. */
  readonly key: { readonly by: 'client' } | { readonly by: 'claim'; readonly claim: string };
}

export interface CorsSpec {
  /** Exact origins, or `*`. */
  readonly allowOrigins: readonly string[];
  readonly allowMethods: readonly string[];
  readonly allowHeaders: readonly string[];
  readonly exposeHeaders: readonly string[];
  readonly maxAgeSeconds: number;
  readonly allowCredentials: boolean;
}

export interface RouteSpec {
  readonly name: string;
  /** Exact hosts or `*.suffix` wildcards (lower case, no port); `*` alone: any host. */
  readonly hosts: readonly string[];
  /** Listener names this route is served on; empty: all. */
  readonly listeners: readonly string[];
  readonly match: RouteMatch | undefined;
  /** Exactly one of destination and redirect. */
  readonly destination?: DestinationSpec;
  readonly redirect?: RedirectSpec;
  readonly rewrite?: RewriteSpec;
  readonly requestHeaders?: HeaderEdits;
  /** Whole exchange, from the request head to the last response byte's start; absent: the destination's TimeoutPolicy applies. */
  readonly timeoutMs?: number;
  readonly jwt?: JwtRouteSpec;
  readonly rateLimit?: RateLimitSpec;
  readonly cors?: CorsSpec;
  /** Overrides `limits.maxBodyBytes` for this route. */
  readonly maxBodyBytes?: number;
}

export interface GatewayLimits {
  readonly maxHeaderBytes: number;
  readonly maxBodyBytes: number;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly maxConnections: number;
  readonly maxConcurrentStreams: number;
}

export interface MeshSpec {
  readonly control: URL;
  readonly caFile: string | undefined;
  readonly tokenFile: string | undefined;
  readonly dataDir: string | undefined;
  readonly zone: string | undefined;
  readonly trustDomain: string | undefined;
  readonly rootNamespace: string;
  readonly tunnel: { readonly host: string; readonly port: number };
}

export interface GatewayConfig {
  readonly file: string;
  /** The gateway's mesh identity: spiffe://TD/ns/<namespace>/sa/<name>. */
  readonly name: string;
  readonly namespace: string;
  readonly mesh: MeshSpec;
  readonly admin: { readonly host: string; readonly port: number } | null;
  readonly listeners: readonly ListenerSpec[];
  readonly routes: readonly RouteSpec[];
  readonly jwtProviders: readonly JwtProviderSpec[];
  /** Proxies in front of the gateway whose X-Forwarded-For / Forwarded entries are believed. */
  readonly trustedHops: number;
  readonly limits: GatewayLimits;
  readonly accessLog: boolean;
}

export const GATEWAY_DEFAULTS = Object.freeze({
  name: 'gateway',
  namespace: 'trellis-gateway',
  limits: Object.freeze<GatewayLimits>({
    maxHeaderBytes: 16 * 1024,
    maxBodyBytes: 10 * 1024 * 1024,
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 60_000,
    keepAliveTimeoutMs: 60_000,
    maxConnections: 10_000,
    maxConcurrentStreams: 128,
  }),
});
