/**
 * The agent's half of golden metrics: every `DEFAULT_SUMMARY_INTERVAL_MS` while the watch is connected, the
 * change since the last accepted summary of the sidecar's own counters (HTTP requests and their latency
 * histogram, TCP connections, policy denials) is posted to the control plane as a `GoldenSummary`, with
 * the certificate's expiry and the config in force. Nothing is added to the data path: the counters exist
 * for /metrics already, and are read here once per interval. A summary that is not accepted leaves the
 * baseline where it was, so the next one carries both intervals. A control plane that does not know the
 * path (404: older than summaries) is not asked again until the agent restarts.
 */
import type { Registry } from 'prom-client';
import { ControlError } from '../api/control-client.js';
import { POLICY_LABEL, SERVICE_LABEL, SUMMARY_LIMITS, type GoldenSummary } from '../api/golden-summary.js';
import { diff, readCounters, type Reading } from '../proxy/golden-counters.js';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';

export interface GoldenReporterOptions {
  readonly registry: Registry;
  readonly instanceId: string;
  readonly intervalMs: number;
  /** Whether the watch is connected now (summaries go only then). */
  readonly connected: () => boolean;
  readonly config: () => { readonly version: number | null; readonly policyRevision: string | null; readonly stale: boolean };
  readonly certNotAfter: () => Date | undefined;
  /** Posts one summary; rejects with a ControlError on a refusal. */
  readonly send: (summary: GoldenSummary) => Promise<void>;
  readonly log: Logger;
  readonly now?: () => number;
}

export class GoldenReporter {
  private baseline: Reading = new Map();
  private baselineAt: number;
  private timer: NodeJS.Timeout | undefined;
  private disabled = false;
  private sending = false;
  private readonly now: () => number;

  constructor(private readonly options: GoldenReporterOptions) {
    this.now = options.now ?? Date.now;
    this.baselineAt = this.now();
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => void this.tick(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Builds the summary since the baseline (exported for tests and the benchmark). */
  async build(): Promise<{ summary: GoldenSummary; reading: Reading }> {
    const reading = await readCounters(this.options.registry);
    const all = diff(this.baseline, reading);
    // Pairs the control plane would refuse (an explicit listener's `local` caller, a label of another shape)
    // are left out rather than costing the whole summary.
    const edges = all.edges.filter((e) => SERVICE_LABEL.test(e.source) && SERVICE_LABEL.test(e.destination));
    const denials = all.denials.filter((d) => SERVICE_LABEL.test(d.source) && SERVICE_LABEL.test(d.destination) && POLICY_LABEL.test(d.policy));
    // The largest first, so what is cut to stay under the limits is the least.
    edges.sort((a, b) => b.requests - a.requests);
    denials.sort((a, b) => b.count - a.count);
    const keptEdges = edges.slice(0, SUMMARY_LIMITS.maxEdges);
    const keptDenials = denials.slice(0, SUMMARY_LIMITS.maxDenials);
    const config = this.options.config();
    const summary: GoldenSummary = {
      instanceId: this.options.instanceId,
      intervalMs: Math.max(0, Math.round(this.now() - this.baselineAt)),
      configVersion: config.version,
      policyRevision: config.policyRevision,
      configStale: config.stale,
      certNotAfter: this.options.certNotAfter()?.toISOString() ?? null,
      edges: keptEdges,
      denials: keptDenials,
      truncated: all.edges.length - keptEdges.length + all.denials.length - keptDenials.length,
    };
    return { summary, reading };
  }

  async tick(): Promise<void> {
    if (this.disabled || this.sending || !this.options.connected()) return;
    this.sending = true;
    try {
      const { summary, reading } = await this.build();
      await this.options.send(summary);
      this.baseline = reading;
      this.baselineAt = this.now();
    } catch (err) {
      if (err instanceof ControlError && err.status === 404) {
        this.disabled = true;
        this.options.log.info('the control plane takes no golden-metrics summaries (older than them); not sending any');
      } else {
        this.options.log.debug({ err: describeError(err) }, 'golden-metrics summary not accepted; the next one carries this interval too');
      }
    } finally {
      this.sending = false;
    }
  }
}
