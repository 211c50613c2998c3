/**
 * The control plane's Prometheus metrics, registered on a Registry the caller owns (several control
 * planes can run in one test process without clashing).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export class ControlMetrics {
  readonly agentsConnected: Gauge;
  readonly configVersion: Gauge;
  readonly pushDuration: Histogram;
  readonly pushedMessages: Counter;
  readonly certificates: Counter<'kind' | 'result'>;
  readonly policyValid: Gauge;
  readonly policyErrors: Counter;
  readonly policyPolicies: Gauge;
  readonly endpoints: Gauge<'state'>;
  readonly storeCorrupt: Counter;
  readonly slowWatchers: Counter;
  readonly trustBundleReloads: Counter<'result'>;
  readonly trustBundleRoots: Gauge;
  readonly registrationsRefused: Counter<'code'>;
  readonly instancesLapsed: Counter;

  constructor(registry: Registry, endpointCounts: () => { healthy: number; instances: number; connected: number }) {
    const registers = [registry];
    this.agentsConnected = new Gauge({ name: 'trellis_control_agents_connected', help: 'Agents holding a watch stream now', registers });
    this.configVersion = new Gauge({ name: 'trellis_control_config_version', help: 'Config version most recently pushed to agents', registers });
    this.pushDuration = new Histogram({
      name: 'trellis_control_push_duration_seconds',
      help: 'Time to fan one config change out to every interested watch stream (serialise and write)',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    this.pushedMessages = new Counter({ name: 'trellis_control_pushed_messages_total', help: 'Delta messages written to watch streams', registers });
    this.certificates = new Counter({ name: 'trellis_control_certificates_total', help: 'Certificate requests by kind (issue, renew) and result (ok, refused, error)', labelNames: ['kind', 'result'], registers });
    this.policyValid = new Gauge({ name: 'trellis_control_policy_valid', help: '1 when the last load of the policy directory succeeded; 0 while a rejected change is pending and the last good policy stays in force', registers });
    this.policyErrors = new Counter({ name: 'trellis_control_policy_reload_errors_total', help: 'Policy directory loads rejected as invalid', registers });
    this.policyPolicies = new Gauge({ name: 'trellis_control_policies', help: 'Policies in force', registers });
    this.endpoints = new Gauge({
      name: 'trellis_control_registry_endpoints',
      help: 'Registered workload instances by state',
      labelNames: ['state'],
      registers,
      collect() {
        const c = endpointCounts();
        this.set({ state: 'healthy' }, c.healthy);
        this.set({ state: 'unhealthy' }, c.instances - c.healthy);
        this.set({ state: 'connected' }, c.connected);
      },
    });
    this.storeCorrupt = new Counter({ name: 'trellis_control_store_corrupt_files_total', help: 'Damaged files found in the data dir (named in the log)', registers });
    this.slowWatchers = new Counter({ name: 'trellis_control_slow_watchers_closed_total', help: 'Watch streams closed because the agent read too slowly', registers });
    this.trustBundleReloads = new Counter({ name: 'trellis_control_trust_bundle_reloads_total', help: 'Changes of the CA directory\'s bundle.pem: applied (pushed to agents) or rejected (invalid; the bundle in force stays)', labelNames: ['result'], registers });
    this.trustBundleRoots = new Gauge({ name: 'trellis_control_trust_bundle_roots', help: 'Roots in the trust bundle in force', registers });
    this.registrationsRefused = new Counter({ name: 'trellis_control_registrations_refused_total', help: 'Registrations and endpoint changes refused for ownership or an instance cap, by error code', labelNames: ['code'], registers });
    this.instancesLapsed = new Counter({ name: 'trellis_control_instances_lapsed_total', help: 'Instances removed because their agent did not come back within the lease', registers });
    this.policyValid.set(1);
  }
}
