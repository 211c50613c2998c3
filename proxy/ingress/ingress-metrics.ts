/** The zone ingress's metrics (its admin port's `/metrics`). */
import { Counter, Gauge, type Registry } from 'prom-client';

export interface IngressMetrics {
  /** TLS handshakes on the ingress port, by result and a bounded reason. */
  readonly handshakes: Counter<'result' | 'reason'>;
  readonly sessions: Gauge;
  /** CONNECT streams by result (`ok` or a typed refusal) and the caller's zone. */
  readonly streams: Counter<'result' | 'source_zone' | 'destination'>;
  readonly activeStreams: Gauge;
  /** Bytes carried, `to_destination` / `to_source`. */
  readonly bytes: Counter<'flow'>;
  /** Sessions or streams cut by a limit or a misbehaving peer. */
  readonly errors: Counter<'reason'>;
}

export function createIngressMetrics(registry: Registry): IngressMetrics {
  const registers = [registry];
  return {
    handshakes: new Counter({ name: 'trellis_ingress_handshakes_total', help: 'TLS handshakes on the zone ingress port, by result and reason.', labelNames: ['result', 'reason'] as const, registers }),
    sessions: new Gauge({ name: 'trellis_ingress_sessions', help: 'Open caller sessions on the zone ingress.', registers }),
    streams: new Counter({
      name: 'trellis_ingress_streams_total',
      help: "CONNECT streams through the zone ingress, by result (ok or the typed refusal), the caller's zone and the destination service.",
      labelNames: ['result', 'source_zone', 'destination'] as const,
      registers,
    }),
    activeStreams: new Gauge({ name: 'trellis_ingress_streams_active', help: 'Streams spliced through the zone ingress now.', registers }),
    bytes: new Counter({ name: 'trellis_ingress_bytes_total', help: 'Bytes carried through the zone ingress, by direction.', labelNames: ['flow'] as const, registers }),
    errors: new Counter({ name: 'trellis_ingress_errors_total', help: 'Zone ingress sessions or streams cut by a limit or a misbehaving peer, by reason.', labelNames: ['reason'] as const, registers }),
  };
}
