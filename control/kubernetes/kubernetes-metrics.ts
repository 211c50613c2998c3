/**
 * Metrics of the Kubernetes mode: the health of each watch (events, relists and why, errors) and of
 * TokenReview (results, cache hits). Registered on the Registry the control plane owns, so several
 * control planes can run in one test process.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

export class KubernetesMetrics {
  readonly watchEvents: Counter<'resource' | 'type'>;
  readonly relists: Counter<'resource' | 'reason'>;
  readonly watchErrors: Counter<'resource'>;
  readonly synced: Gauge<'resource'>;
  readonly tokenReviews: Counter<'result'>;
  readonly tokenReviewCacheHits: Counter;
  readonly endpointsOutsideMesh: Gauge;
  readonly endpointsOtherIdentity: Gauge<'service'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.watchEvents = new Counter({ name: 'trellis_control_k8s_watch_events_total', help: 'Watch events received from the Kubernetes API, by resource and type', labelNames: ['resource', 'type'], registers });
    this.relists = new Counter({
      name: 'trellis_control_k8s_relists_total',
      help: 'Full lists of a resource, by reason: start, expired (410 Gone), resync (periodic), error (after a failed list or watch)',
      labelNames: ['resource', 'reason'],
      registers,
    });
    this.watchErrors = new Counter({ name: 'trellis_control_k8s_watch_errors_total', help: 'Failed lists or watches (retried with backoff)', labelNames: ['resource'], registers });
    this.synced = new Gauge({ name: 'trellis_control_k8s_synced', help: '1 once the resource has been listed and is being watched; 0 while it is failing', labelNames: ['resource'], registers });
    this.tokenReviews = new Counter({
      name: 'trellis_control_k8s_token_reviews_total',
      help: 'Service-account tokens checked with TokenReview, by result (ok, refused, error); cache hits not included',
      labelNames: ['result'],
      registers,
    });
    this.tokenReviewCacheHits = new Counter({ name: 'trellis_control_k8s_token_review_cache_hits_total', help: 'Service-account tokens answered from the short TokenReview cache', registers });
    this.endpointsOutsideMesh = new Gauge({ name: 'trellis_control_k8s_endpoints_outside_mesh', help: 'EndpointSlice endpoints skipped because their pod has no Trellis sidecar', registers });
    this.endpointsOtherIdentity = new Gauge({
      name: 'trellis_control_k8s_endpoints_other_identity',
      help: 'Mesh pods of a Service left out because their service account is not the Service name (their sidecar would refuse the calls)',
      labelNames: ['service'],
      registers,
    });
  }
}
