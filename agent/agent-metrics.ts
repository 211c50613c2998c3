/**
 * The agent's own metrics, registered beside the sidecar's on one Registry: whether it reaches the control
 * plane, whether the config in force is stale (restored from disk, or the watch is down), its version,
 * renewals, and the app's health.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

export class AgentMetrics {
  readonly controlPlaneConnected: Gauge;
  readonly configStale: Gauge;
  readonly configVersion: Gauge;
  readonly configUpdates: Counter<'result'>;
  readonly renewals: Counter<'result'>;
  readonly appHealthy: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.controlPlaneConnected = new Gauge({ name: 'trellis_agent_control_plane_connected', help: '1 while the agent holds its watch on the control plane', registers });
    this.configStale = new Gauge({ name: 'trellis_agent_config_stale', help: '1 while the config in force may be out of date (control plane unreachable, or restored from disk after a restart)', registers });
    this.configVersion = new Gauge({ name: 'trellis_agent_config_version', help: 'Version of the control plane config in force', registers });
    this.configUpdates = new Counter({ name: 'trellis_agent_config_updates_total', help: 'Config updates by result: applied; applied-degraded (in force, but some outbound listeners could not bind and are retried); rejected; failed', labelNames: ['result'], registers });
    this.renewals = new Counter({ name: 'trellis_agent_certificate_renewals_total', help: 'Certificate renewals by result (ok, failed)', labelNames: ['result'], registers });
    this.appHealthy = new Gauge({ name: 'trellis_agent_app_healthy', help: '1 when the last health checks of the app passed', registers });
  }
}
