/**
 * The injector's Prometheus metrics, registered on a Registry passed in (never the global one), so tests
 * and one process can hold several injectors.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export type AdmissionResult = 'injected' | 'unchanged' | 'skipped' | 'refused' | 'ignored' | 'malformed' | 'error';

export interface InjectorMetrics {
  readonly admissions: Counter<'result'>;
  readonly skipped: Counter<'reason'>;
  readonly duration: Histogram<'result'>;
  readonly events: Counter<'result'>;
  readonly certificateExpiry: Gauge;
  readonly certificateReloads: Counter<'result'>;
  readonly caBundleSyncs: Counter<'result'>;
  readonly podSecurityRefusals: Counter<'level' | 'capture_mode'>;
}

export function createInjectorMetrics(registry: Registry): InjectorMetrics {
  return {
    admissions: new Counter({ name: 'trellis_injector_admissions_total', help: 'Admission reviews answered, by result', labelNames: ['result'], registers: [registry] }),
    skipped: new Counter({ name: 'trellis_injector_skipped_total', help: 'Pods not injected, by reason (host-network, other-mesh, opted-out, ...)', labelNames: ['reason'], registers: [registry] }),
    duration: new Histogram({
      name: 'trellis_injector_admission_duration_seconds',
      help: 'Time from a complete request body to the response being written',
      labelNames: ['result'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
      registers: [registry],
    }),
    events: new Counter({ name: 'trellis_injector_events_total', help: 'Kubernetes Events about skipped pods: sent, deduplicated, dropped (queue full) or failed', labelNames: ['result'], registers: [registry] }),
    certificateExpiry: new Gauge({ name: 'trellis_injector_serving_certificate_expiry_timestamp_seconds', help: 'NotAfter of the serving certificate in use (Unix seconds)', registers: [registry] }),
    certificateReloads: new Counter({ name: 'trellis_injector_serving_certificate_reloads_total', help: 'Serving certificate loads, by result', labelNames: ['result'], registers: [registry] }),
    podSecurityRefusals: new Counter({
      name: 'trellis_injector_pod_security_refusals_total',
      help: "Pods refused because injecting would break their namespace's Pod Security level, by level and capture mode",
      labelNames: ['level', 'capture_mode'],
      registers: [registry],
    }),
    caBundleSyncs: new Counter({ name: 'trellis_injector_ca_bundle_syncs_total', help: 'caBundle checks of the MutatingWebhookConfiguration: updated, unchanged or failed', labelNames: ['result'], registers: [registry] }),
  };
}
