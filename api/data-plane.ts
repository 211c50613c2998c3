/**
 * The data-plane configuration: what a sidecar needs to know to carry traffic for one workload.
 *
 * This is the contract between whoever produces configuration (the control plane, through the agent,
 * or a static YAML file for `trellis proxy run`) and the proxy that consumes it. The control plane and
 * the proxy never import each other; both import these types. Values are validated at the edge that
 * receives them, then frozen; the proxy swaps a whole frozen config atomically.
 */

/** How a port's traffic is carried (api/port-protocol.ts): `tcp`, `http`, `http2` or `grpc`. */
export type { PortProtocol } from './port-protocol.js';
import type { PortProtocol } from './port-protocol.js';

/** Inbound connections that did not come through the mesh: refused (`strict`) or handed to the app (`permissive`). */
export type InboundMode = 'strict' | 'permissive';

/** One port of the local application, as the inbound sidecar delivers to it. */
export interface AppPort {
  /** The port the app listens on (and that callers name as the target port). */
  readonly port: number;
  readonly protocol: PortProtocol;
  /** Where the app listens; 127.0.0.1 unless the app binds elsewhere. */
  readonly host: string;
  /** How the inbound sidecar judges HTTP requests to this port (`http` ports only); defaults when absent. */
  readonly http?: AppHttpOptions;
}

/**
 * Per-port HTTP options. Absent fields take the defaults (`DEFAULT_APP_HTTP_OPTIONS` in
 * proxy/inbound/http/authorization.ts), which are the safe choice; both are validated where config is read.
 */
export interface AppHttpOptions {
  /**
   * Lower-case `Upgrade` protocols the app may switch to after a 101 (default `["websocket"]`). `h2c` is
   * never allowed: after its 101 every request would reach the app unchecked.
   */
  readonly upgradeProtocols?: readonly string[];
  /**
   * `%2F` and `%5C` in a request path: `reject` (default) answers 400, `keep` passes them on unchanged for
   * apps that never decode them into separators.
   */
  readonly escapedSlashes?: 'reject' | 'keep';
  /**
   * `;` in a request path: `reject` (default) answers 400, since servlet containers strip `;params` from
   * each segment before routing (`/admin;x/users` is `/admin/users` to them, past a rule about `/admin/*`);
   * `keep` passes them on for apps that read `;` as an ordinary character.
   */
  readonly pathParameters?: 'reject' | 'keep';
}

/**
 * The endpoint label naming its subzone inside its zone (a rack, an availability zone of the cluster):
 * callers of the same subzone prefer it (proxy/outbound/tunnel-client/locality.ts). Set by the agent's
 * `--subzone` (or `--label trellis.dev/subzone=...`), and in Kubernetes by the pod's label or else the
 * EndpointSlice's `zone` (the node's `topology.kubernetes.io/zone`). Istio's `topology.istio.io/subzone`.
 */
export const SUBZONE_LABEL = 'trellis.dev/subzone';

/** A subzone is a non-empty Kubernetes label value (cloud zone names such as `us-east-1a` are). */
export function isSubzone(value: string): boolean {
  return /^[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/.test(value);
}

/** One reachable copy of a service: the tunnel address of that workload's sidecar. */
export interface Endpoint {
  /** IP address (or host name, for static configs) of the workload. */
  readonly address: string;
  /** The workload sidecar's tunnel port (15008 by default). */
  readonly tunnelPort: number;
  readonly zone: string;
  readonly healthy: boolean;
  /** Reach this endpoint through its zone's ingress: set for endpoints in other zones. */
  readonly ingress?: { readonly address: string; readonly port: number };
  /**
   * Where this endpoint's app listens, per service port (`ServicePort.port` → app port), when it is not
   * simply every port at its `targetPort`: instances of one service may listen on different app ports
   * behind one service port (a Kubernetes named targetPort resolving differently per pod, or two VMs
   * registering different `--app-port`s). When present it lists every service port the endpoint serves;
   * a port it does not list is not served there, and the endpoint is not picked for it. Absent: every
   * service port, at its `targetPort` (all a sidecar older than this field knows; added within protocol
   * version 1, so an older control plane or agent still works with the single `targetPort`).
   */
  readonly targetPorts?: Readonly<Record<number, number>>;
  /**
   * Labels of the workload (`version: v2`, ...), from its registration (`--label`), its pod's labels or the
   * agent's flags: what TrafficRoute backends select. Absent: no labels (only label-less backends match).
   */
  readonly labels?: Readonly<Record<string, string>>;
  /**
   * The trust domain of the workload behind this endpoint, when it is not the caller's own (a zone with its
   * own PKI): the session is verified against that federated trust domain's roots alone, and its leaf must
   * name it (proxy/core/federated-trust.ts). Absent: the caller's trust domain.
   */
  readonly trustDomain?: string;
}

/** A port a service exposes to callers, and the workload port it lands on. */
export interface ServicePort {
  readonly port: number;
  /** The app port of endpoints that carry no `targetPorts` of their own (see `Endpoint.targetPorts`). */
  readonly targetPort: number;
  readonly protocol: PortProtocol;
  readonly name?: string;
}

/** A service this workload may call, with the endpoints that serve it. */
export interface UpstreamService {
  readonly name: string;
  readonly namespace: string;
  readonly ports: readonly ServicePort[];
  readonly endpoints: readonly Endpoint[];
  /** Virtual IPs (Kubernetes ClusterIPs) that name this service, for transparent capture. */
  readonly virtualIps?: readonly string[];
}

/** Explicit mode: a local port that the app connects to instead of the service's own address. */
export interface OutboundListener {
  readonly bindAddress: string;
  readonly localPort: number;
  readonly service: string;
  readonly namespace: string;
  /** The service port this listener stands for. */
  readonly port: number;
}

/** Certificates of this workload: PEM leaf followed by its chain, its private key, and the trust bundle. */
export interface WorkloadIdentity {
  readonly certChainPem: string;
  readonly keyPem: string;
  readonly trustBundlePem: string;
  /**
   * Roots of the federated trust domains, trust domain → PEM (`AgentSnapshot.federatedBundles`): peers of
   * those trust domains pass the tunnel handshake, each verified against its own trust domain's roots only.
   */
  readonly federatedBundles?: Readonly<Record<string, string>>;
}

/**
 * The app port `endpoint` serves `servicePort` on, or undefined when it does not serve that port (see
 * `Endpoint.targetPorts`); `defaultTarget` is the service port's `targetPort`. Allocates nothing: it runs
 * per connection and per request.
 */
export function endpointTargetPort(endpoint: Endpoint, servicePort: number, defaultTarget: number): number | undefined {
  const own = endpoint.targetPorts;
  if (own === undefined) return defaultTarget;
  const port = own[servicePort];
  return typeof port === 'number' && Number.isInteger(port) && port >= 1 && port <= 65535 ? port : undefined;
}
