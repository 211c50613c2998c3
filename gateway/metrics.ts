/**
 * The gateway's metrics, per listener, route and upstream (the mesh service a route forwards to), on the
 * registry the agent's admin port serves. Route and listener names come from the config, so the label
 * sets are bounded by it; a request no route matched is counted under `route="none"`.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class GatewayMetrics {
  readonly requests: Counter<'listener' | 'route' | 'upstream' | 'status_code'>;
  readonly duration: Histogram<'listener' | 'route' | 'upstream'>;
  readonly refusals: Counter<'listener' | 'route' | 'reason'>;
  readonly connections: Counter<'listener' | 'protocol'>;
  readonly tlsErrors: Counter<'listener' | 'reason'>;
  readonly configReloads: Counter<'result'>;
  readonly certificateReloads: Counter<'listener'>;
  readonly configValid: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new Counter({ name: 'trellis_gateway_requests_total', help: 'Requests answered by the gateway, by listener, route, upstream service and status code.', labelNames: ['listener', 'route', 'upstream', 'status_code'], registers });
    this.duration = new Histogram({ name: 'trellis_gateway_request_duration_seconds', help: 'From the request head to the end of the response, by listener, route and upstream.', labelNames: ['listener', 'route', 'upstream'], buckets: BUCKETS, registers });
    this.refusals = new Counter({ name: 'trellis_gateway_refusals_total', help: 'Requests the gateway refused itself (no route, JWT, rate limit, size, CORS, bad request), by reason.', labelNames: ['listener', 'route', 'reason'], registers });
    this.connections = new Counter({ name: 'trellis_gateway_connections_total', help: 'Client connections accepted, by listener and protocol (http/1.1, h2).', labelNames: ['listener', 'protocol'], registers });
    this.tlsErrors = new Counter({ name: 'trellis_gateway_tls_errors_total', help: 'Failed TLS handshakes (garbage, no shared version or cipher, a refused client certificate, timeouts).', labelNames: ['listener', 'reason'], registers });
    this.configReloads = new Counter({ name: 'trellis_gateway_config_reloads_total', help: 'New gateway configs offered (file reloads and apply), by result (applied, rejected).', labelNames: ['result'], registers });
    this.certificateReloads = new Counter({ name: 'trellis_gateway_certificate_reloads_total', help: 'Listener certificate sets reloaded from disk.', labelNames: ['listener'], registers });
    this.configValid = new Gauge({ name: 'trellis_gateway_config_valid', help: '1 when the config last offered is the one in force; 0 when it was rejected (the last good one serves).', registers });
    this.configValid.set(1);
  }
}
