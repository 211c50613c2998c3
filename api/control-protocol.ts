/**
 * The wire protocol between a zone control plane and its agents (protocol version 1).
 *
 * Transport: HTTPS (TLS 1.3) on the control plane's API port (15012 by default). The control plane's
 * certificate comes from the mesh CA (via the zone intermediate) and carries the URI SAN
 * `spiffe://<td>/ns/<root-namespace>/sa/trellis-control`; agents verify the chain against the trust
 * bundle they were given (`--ca-file` on first contact, the bundle from their last issuance after that)
 * and check that SPIFFE ID instead of a host name, so a control plane reached by IP needs no DNS SAN.
 *
 * Authentication, per path:
 *  - `POST /v1/identity/issue`: a bootstrap credential in `Authorization: Bearer <credential>`
 *    (a join token for VMs; a projected service-account token in Kubernetes). The credential alone
 *    decides the SPIFFE ID; whatever the CSR asks for is ignored.
 *  - everything else under `/v1/` except admin: mutual TLS with the workload's current certificate.
 *    The service and namespace of every request come from the peer certificate's SPIFFE ID. An expired
 *    join token therefore never strands a running workload: renewal needs only a valid certificate.
 *  - `/v1/admin/*`: `Authorization: Bearer <admin credential>` (the control plane writes it to
 *    `<data-dir>/admin-token`, mode 0600).
 *
 * Every request and response carries `trellis-protocol: 1`; a control plane refuses a request with an
 * unknown major version with 400 and `TRELLIS_CONTROL_PROTOCOL_UNSUPPORTED`. Errors are JSON `ErrorBody`.
 *
 * The watch (`POST /v1/watch`) is one long-lived response per agent: chunked NDJSON (one `WatchMessage`
 * per line). The first message is a full `snapshot`; later ones are `delta`s, so one endpoint changing
 * among thousands costs one small line per interested agent. `version` is the control plane's config
 * version: it only grows on one stream (a stream skips the versions that did not concern it), so the
 * control plane serialises a delta once and writes the same bytes to every interested stream; `epoch`
 * names the control plane process, and a new epoch always starts with a snapshot.
 * A `ping` every `pingIntervalMs` lets the agent notice a half-open connection; an agent that sees
 * nothing for `3 × pingIntervalMs` reconnects. An agent that cannot apply a delta (an unknown upstream,
 * a version that goes backwards) drops the stream and reconnects for a fresh snapshot.
 * Holding the watch open is also the agent's liveness: when it closes, the agent's endpoint leaves the
 * healthy set (after `disconnectGraceMs`), and a reconnect restores it; one that stays closed for the
 * control plane's instance lease (60 s by default) removes the instance.
 */
import type { Endpoint, PortProtocol, UpstreamService } from './data-plane.js';
import type { TrafficPermission } from '../policy/types.js';

export const CONTROL_PROTOCOL_VERSION = 1;
export const PROTOCOL_HEADER = 'trellis-protocol';
export const DEFAULT_CONTROL_PORT = 15012;
export const DEFAULT_CONTROL_ADMIN_PORT = 15014;
/** The control plane's own workload name inside the root namespace, as in its SPIFFE ID. */
export const CONTROL_PLANE_SERVICE = 'trellis-control';

export const CONTROL_PATHS = Object.freeze({
  issue: '/v1/identity/issue',
  renew: '/v1/identity/renew',
  watch: '/v1/watch',
  /** `PUT`: health of the app beside the agent; `DELETE`: deregister (clean shutdown). */
  endpoint: (instanceId: string) => `/v1/endpoints/${encodeURIComponent(instanceId)}`,
  endpointPrefix: '/v1/endpoints/',
  trustBundle: '/v1/trust-bundle',
  adminTokens: '/v1/admin/tokens',
  adminToken: (id: string) => `/v1/admin/tokens/${encodeURIComponent(id)}`,
  adminTokenPrefix: '/v1/admin/tokens/',
});

/** Body limits: a CSR is ~500 bytes, a registration a few KiB; anything larger is refused with 413. */
export const MAX_REQUEST_BODY_BYTES = 64 * 1024;

export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string };
}

// ---- identity ------------------------------------------------------------------------------------

export interface IssueRequest {
  /** PKCS#10 CSR, PEM, for an ECDSA P-256 key made on the workload. */
  readonly csrPem: string;
}

export interface IssueResponse {
  readonly spiffeId: string;
  /** Leaf first, then the intermediates up to (not including) the root. */
  readonly certChainPem: string;
  /** Every root the mesh currently trusts (several during a root rotation). */
  readonly trustBundlePem: string;
  /** ISO-8601. */
  readonly notAfter: string;
  readonly serial: string;
  readonly trustDomain: string;
  /** The zone of the control plane that issued it. */
  readonly zone: string;
}

/** `POST /v1/identity/renew` takes the same body as issue; the SPIFFE ID is the current certificate's. */
export type RenewRequest = IssueRequest;
export type RenewResponse = IssueResponse;

// ---- registration and watch ------------------------------------------------------------------------

export interface RegisteredPort {
  readonly port: number;
  readonly protocol: PortProtocol;
  readonly name?: string;
}

/**
 * A service an agent subscribes to. `service: '*'` subscribes to every service of the mesh in
 * `namespace`; `{ service: '*', namespace: '*' }` to every service of the mesh (what a sidecar under
 * transparent capture needs: the app may call any of them at its own address). A service is "of the
 * mesh" while at least one workload of the mesh backs it (a registered agent, or a pod with the sidecar
 * in a Kubernetes EndpointSlice): a Kubernetes Service with no such pod, like the API server's, is left
 * out, so capture passes its connections through instead of sending them into the mesh to nobody.
 * `namespace: '*'` is only valid with `service: '*'`. Wildcards were added within protocol version 1: a
 * control plane that predates them refuses such a registration (400 `TRELLIS_CONTROL_BAD_REGISTRATION`)
 * rather than silently sending an empty config, and agents that name services are unaffected.
 */
export interface UpstreamRef {
  readonly service: string;
  readonly namespace: string;
}

/** The wildcard of `UpstreamRef.service` and `.namespace`. */
export const ANY_UPSTREAM = '*';

/** The subscription to every service of the mesh. */
export const ALL_UPSTREAMS: UpstreamRef = Object.freeze({ service: ANY_UPSTREAM, namespace: ANY_UPSTREAM });

export function isWildcardRef(ref: UpstreamRef): boolean {
  return ref.service === ANY_UPSTREAM;
}

/** Whether a subscription includes `namespace/service`, by name or by wildcard. */
export function subscriptionCovers(refs: readonly UpstreamRef[], namespace: string, service: string): boolean {
  return refs.some((r) => (r.namespace === ANY_UPSTREAM || r.namespace === namespace) && (r.service === ANY_UPSTREAM || r.service === service));
}

export interface Registration {
  /** Stable per workload instance across agent restarts (kept in the agent's data dir). */
  readonly instanceId: string;
  /**
   * Must equal the control plane's zone when given; a zone control plane is the authority for one zone.
   * Omitted: the control plane's zone.
   */
  readonly zone?: string;
  /** The address other sidecars reach this workload's tunnel port on. */
  readonly address: string;
  readonly tunnelPort: number;
  /** The app's inbound ports and how their traffic is carried. */
  readonly ports: readonly RegisteredPort[];
  /** Result of the agent's last health check of the app. */
  readonly healthy: boolean;
  /** The services this workload calls (by name, or by wildcard: see `UpstreamRef`): the snapshot carries their endpoints. */
  readonly upstreams: readonly UpstreamRef[];
  readonly agentVersion: string;
  /** Workload labels (`version: v2`, ...) that TrafficRoute backends select; `--label` on the agent. At most 16. */
  readonly labels?: Readonly<Record<string, string>>;
  /**
   * The workload's word on whether its service is exported to other zones (`trellis agent run --export`
   * / `--no-export`); omitted: the mesh-wide default decides. Zone control plane rules override it, and
   * when instances of one service disagree, `false` wins (`control/zone-sync/exports.ts`). Added within
   * protocol version 1: an older control plane refuses the field (400) rather than ignore it.
   */
  readonly export?: boolean;
}

export interface WatchRequest {
  readonly registration: Registration;
}

/** Everything an agent needs, in one versioned document. */
export interface AgentSnapshot {
  readonly trustDomain: string;
  readonly rootNamespace: string;
  readonly zone: string;
  /** This workload as the control plane registered it. */
  readonly self: { readonly service: string; readonly namespace: string; readonly spiffeId: string };
  readonly trustBundlePem: string;
  /** The policies that can decide for this workload's inbound: its namespace's and the root namespace's. */
  readonly policies: readonly TrafficPermission[];
  /** Revision of the policy set, `sha256:<hex>` of its canonical JSON: shows in metrics and readiness. */
  readonly policyRevision: string;
  /**
   * Traffic-management resources (routes, retries, timeouts, outlier detection, circuit breakers) for the
   * destinations this workload may call. Added within protocol version 1: absent from an older control
   * plane (defaults apply), ignored by an older agent. Each is the document as its author wrote it
   * (policy/traffic `writtenForm`), not the control plane's normalised form: the agent validates and
   * normalises it itself (`validateTrafficObjects`), and the written form is what that reads.
   */
  readonly traffic?: readonly unknown[];
  readonly upstreams: readonly UpstreamService[];
  /**
   * Certificates issued through a revoked join token (and their renewals) that have not expired yet:
   * sidecars refuse tunnel sessions from them and close the ones open. Added within protocol version 1:
   * absent from an older control plane's snapshot (nothing revoked), ignored by an older agent.
   */
  readonly revokedSerials?: readonly RevokedSerial[];
  /**
   * Roots of the federated trust domains (other zones with their own PKI), trust domain → PEM. Absent when
   * none; an older agent ignores it (and keeps refusing those peers).
   */
  readonly federatedBundles?: Readonly<Record<string, string>>;
}

/** Trust domains a sidecar federates with at most: each adds its roots to every handshake's verification pool. */
export const MAX_FEDERATED_TRUST_DOMAINS = 64;

/** One revoked certificate: kept on the list only until its `notAfter`, when it stops working anyway. */
export interface RevokedSerial {
  /** Lowercase hex without leading zeros (`normaliseSerial`). */
  readonly serial: string;
  /** ISO-8601. */
  readonly notAfter: string;
}

/** One spelling of a certificate serial for comparisons: node:crypto gives uppercase hex, the CA lowercase. */
export function normaliseSerial(serial: string): string {
  return serial.toLowerCase().replace(/^0+(?=.)/, '');
}

/** One endpoint added or changed (`set`) or gone (`remove`, by `endpointKey`) in one upstream. */
export interface EndpointChange {
  readonly service: string;
  readonly namespace: string;
  readonly set?: Endpoint;
  readonly remove?: string;
}

export interface WatchSnapshotMessage {
  readonly type: 'snapshot';
  readonly version: number;
  /** Identifies the control plane process; a new value means a restarted control plane. */
  readonly epoch: string;
  readonly pingIntervalMs: number;
  readonly snapshot: AgentSnapshot;
}

export interface WatchDeltaMessage {
  readonly type: 'delta';
  readonly version: number;
  /**
   * Replaces the whole upstream: its ports changed, or it vanished (`ports` empty and no endpoints, for
   * agents that name it), or it appeared (for wildcard subscribers, it is then new to the agent).
   */
  readonly upstreams?: readonly UpstreamService[];
  /**
   * Services that left the mesh (their last workload went): only sent to wildcard subscribers, which drop
   * them; one named upstream instead stays, empty. Applied before `upstreams` and `endpoints`. An agent
   * ignores a removal of a service it does not hold (it may have come and gone within one batch).
   */
  readonly removedUpstreams?: readonly UpstreamRef[];
  readonly endpoints?: readonly EndpointChange[];
  readonly policies?: readonly TrafficPermission[];
  readonly policyRevision?: string;
  /** Replaces the whole traffic set (see `AgentSnapshot.traffic`, written form); sent with every policy change. */
  readonly traffic?: readonly unknown[];
  readonly trustBundlePem?: string;
  /** Replaces the whole revoked list (see `AgentSnapshot.revokedSerials`). */
  readonly revokedSerials?: readonly RevokedSerial[];
  /** Replaces the whole federated bundle set (see `AgentSnapshot.federatedBundles`; `{}` for none). */
  readonly federatedBundles?: Readonly<Record<string, string>>;
}

export interface WatchPingMessage {
  readonly type: 'ping';
  readonly version: number;
}

export type WatchMessage = WatchSnapshotMessage | WatchDeltaMessage | WatchPingMessage;

export interface HealthReport {
  readonly healthy: boolean;
  /** Short human reason, e.g. "connect ECONNREFUSED 127.0.0.1:8080". */
  readonly detail?: string;
}

// ---- admin: join tokens ----------------------------------------------------------------------------

/**
 * What a join token may bootstrap beyond an ordinary workload: `ingress`, the zone ingress's identity
 * (`<root-namespace>/trellis-ingress`), which only a token made for it (`trellis token create --ingress`) carries.
 */
export type TokenRole = 'ingress';

export interface CreateTokenRequest {
  readonly service: string;
  readonly namespace: string;
  readonly ttlMs: number;
  /** How many bootstraps the token allows (default 1). */
  readonly uses?: number;
  readonly role?: TokenRole;
}

export interface CreateTokenResponse {
  readonly id: string;
  readonly token: string;
  readonly service: string;
  readonly namespace: string;
  /** ISO-8601. */
  readonly expiresAt: string;
  readonly uses?: number;
  readonly usesLeft?: number;
  readonly role?: TokenRole;
}

export interface TokenRecordView {
  readonly id: string;
  readonly service: string;
  readonly namespace: string;
  /** Set on a token made for the zone ingress (`--ingress`); absent on every other. */
  readonly role?: TokenRole;
  readonly createdAt: string;
  readonly expiresAt: string;
  readonly revokedAt?: string;
  /** Absent on tokens made before use counts: those are reusable until they expire. */
  readonly uses?: number;
  readonly usesLeft?: number;
  /** Certificates issued through the token, renewals included, that have not expired. */
  readonly certificates?: number;
}

/** The key of one endpoint inside an upstream: its tunnel address. */
export function endpointKey(endpoint: Pick<Endpoint, 'address' | 'tunnelPort'>): string {
  return endpoint.address.includes(':') ? `[${endpoint.address}]:${endpoint.tunnelPort}` : `${endpoint.address}:${endpoint.tunnelPort}`;
}

/** The key of one upstream service: `namespace/name`. */
export function upstreamKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/**
 * The unverified claims of a join token (`tjt1.<base64url JSON>.<mac>`), which an agent reads to build
 * its CSR for the right SPIFFE ID before it knows the trust domain. Only the control plane verifies them.
 */
export function peekJoinToken(token: string): { readonly trustDomain: string; readonly namespace: string; readonly service: string; readonly expiresAt: Date } | undefined {
  const parts = token.trim().split('.');
  if (parts.length !== 3 || parts[0] !== 'tjt1') return undefined;
  try {
    const claims = JSON.parse(Buffer.from(parts[1] as string, 'base64url').toString('utf8')) as Record<string, unknown>;
    if (typeof claims.td !== 'string' || typeof claims.ns !== 'string' || typeof claims.svc !== 'string' || typeof claims.exp !== 'number') return undefined;
    return { trustDomain: claims.td, namespace: claims.ns, service: claims.svc, expiresAt: new Date(claims.exp * 1000) };
  } catch {
    return undefined;
  }
}
