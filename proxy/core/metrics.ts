/**
 * The proxy's Prometheus metrics, registered on a Registry the caller passes in (never the global one),
 * so tests and the agent can run several sidecars in one process.
 *
 * Labels are service names (`namespace/service`), never addresses or ids, so cardinality stays bounded by
 * the number of services. Byte counts are added once per connection at its end from the socket's own
 * counters, so the hot path does no metric work per chunk.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

export type Direction = 'inbound' | 'outbound';

export interface ProxyMetrics {
  readonly registry: Registry;
  /** TCP connections proxied, by direction, source, destination and result (ok, denied, error, reset, ...). */
  readonly tcpConnections: Counter<'direction' | 'source' | 'destination' | 'result'>;
  readonly tcpActive: Gauge<'direction'>;
  /** Bytes proxied; `flow` is `to_destination` or `to_source`. */
  readonly tcpBytes: Counter<'direction' | 'source' | 'destination' | 'flow'>;
  /** Denials by the deciding policy and rule; `enforced` false for dry-run denials that were let through. */
  readonly policyDenials: Counter<'source' | 'source_zone' | 'destination' | 'policy' | 'rule' | 'enforced'>;
  /** Inbound tunnel sessions accepted, by the zone the caller's certificate proves (proxy/core/zone-label.ts). */
  readonly tunnelPeerSessions: Counter<'source_zone'>;
  /** Open tunnel sessions. */
  readonly tunnelSessions: Gauge<'direction'>;
  /**
   * Tunnel handshakes by result and reason: `ok` (`full`, `resumed`), `failed` (`no-certificate`, `untrusted`,
   * `timeout`, ...), `refused` by a limit before or right after the handshake (`handshakes-full`,
   * `handshakes-per-address`, `sessions-full`, `sessions-per-identity`, `sessions-per-address`,
   * `identity-penalized`).
   */
  readonly tunnelHandshakes: Counter<'direction' | 'result' | 'reason'>;
  /** Inbound connections in their TLS handshake now (unauthenticated; bounded by `maxHandshakes`). */
  readonly tunnelHandshakesPending: Gauge<'direction'>;
  /** Streams and sessions cut by a limit or a misbehaving peer, by reason. */
  readonly tunnelErrors: Counter<'direction' | 'reason'>;
  /** App connections an outbound listener refused at a connection cap (`listener-limit`, `sidecar-limit`). */
  readonly outboundRefused: Counter<'listener' | 'reason'>;
  /** Streams another zone's ingress refused (its typed `trellis-reason`), or could not carry (`unreachable`). */
  readonly ingressRefusals: Counter<'zone' | 'reason'>;
  readonly certificateExpiry: Gauge<'spiffe_id'>;
  readonly configVersion: Gauge<'version'>;
}

/** The workload certificates in use, read at scrape time so seconds-to-expiry is always current. */
export type CertificateSource = () => readonly { readonly spiffeId: string; readonly notAfterMs: number }[];

export function createProxyMetrics(registry: Registry, certificates?: CertificateSource): ProxyMetrics {
  const registers = [registry];
  return Object.freeze({
    registry,
    tcpConnections: new Counter({
      name: 'trellis_tcp_connections_total',
      help: 'TCP connections carried through the mesh, by direction, source and destination service, and result.',
      labelNames: ['direction', 'source', 'destination', 'result'] as const,
      registers,
    }),
    tcpActive: new Gauge({ name: 'trellis_tcp_connections_active', help: 'TCP connections open now.', labelNames: ['direction'] as const, registers }),
    tcpBytes: new Counter({
      name: 'trellis_tcp_bytes_total',
      help: 'Bytes carried for TCP connections; flow is to_destination or to_source.',
      labelNames: ['direction', 'source', 'destination', 'flow'] as const,
      registers,
    }),
    policyDenials: new Counter({
      name: 'trellis_policy_denials_total',
      help: 'Streams and requests denied by policy, by deciding policy and rule (enforced="false": dry-run, let through).',
      labelNames: ['source', 'source_zone', 'destination', 'policy', 'rule', 'enforced'] as const,
      registers,
    }),
    tunnelPeerSessions: new Counter({
      name: 'trellis_tunnel_peer_sessions_total',
      help: 'Inbound tunnel sessions accepted, by the zone the caller\'s certificate proves (unknown: none proven; other: past 64 zones).',
      labelNames: ['source_zone'] as const,
      registers,
    }),
    tunnelSessions: new Gauge({ name: 'trellis_tunnel_sessions', help: 'Open mTLS tunnel sessions.', labelNames: ['direction'] as const, registers }),
    tunnelHandshakes: new Counter({
      name: 'trellis_tunnel_handshakes_total',
      help: 'Tunnel TLS handshakes by result (ok, failed) and reason.',
      labelNames: ['direction', 'result', 'reason'] as const,
      registers,
    }),
    tunnelHandshakesPending: new Gauge({ name: 'trellis_tunnel_handshakes_pending', help: 'Inbound tunnel connections in their TLS handshake now.', labelNames: ['direction'] as const, registers }),
    tunnelErrors: new Counter({
      name: 'trellis_tunnel_errors_total',
      help: 'Tunnel sessions or streams cut by a limit or a misbehaving peer, by reason.',
      labelNames: ['direction', 'reason'] as const,
      registers,
    }),
    outboundRefused: new Counter({
      name: 'trellis_outbound_connections_refused_total',
      help: 'App connections refused by an outbound listener at its own cap (listener-limit) or the sidecar-wide cap (sidecar-limit).',
      labelNames: ['listener', 'reason'] as const,
      registers,
    }),
    ingressRefusals: new Counter({
      name: 'trellis_ingress_refusals_total',
      help: "Streams a zone ingress refused, by the destination's zone and the ingress's trellis-reason (unreachable: no session to it).",
      labelNames: ['zone', 'reason'] as const,
      registers,
    }),
    certificateExpiry: new Gauge({
      name: 'trellis_certificate_expiry_seconds',
      help: 'Seconds until this workload certificate expires (negative once expired).',
      labelNames: ['spiffe_id'] as const,
      registers,
      collect(): void {
        if (certificates === undefined) return;
        this.reset();
        const now = Date.now();
        for (const c of certificates()) this.set({ spiffe_id: c.spiffeId }, Math.round((c.notAfterMs - now) / 1000));
      },
    }),
    configVersion: new Gauge({ name: 'trellis_config_info', help: 'The config version in effect (value 1).', labelNames: ['version'] as const, registers }),
  });
}
