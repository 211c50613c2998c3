/**
 * Steps 2 and 3 of the agent's config: the snapshot in force, restored from `--data-dir` at start (so
 * serving resumes before the control plane is back) and replaced by each snapshot the watch delivers.
 * A snapshot the sidecar cannot use is rejected whole and the last good one stays; a new trust bundle in
 * it is adopted (root rotation); outbound listeners that go away are named in the log; the snapshot in
 * force is saved at most once a second.
 */
import type { OutboundListener } from '../api/data-plane.js';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Sidecar, SidecarConfig } from '../proxy/sidecar.js';
import type { AgentMetrics } from './agent-metrics.js';
import type { VersionedSnapshot } from './config-state.js';
import type { UpstreamSpec } from './config.js';
import type { HeldIdentity, IdentityManager } from './identity-manager.js';
import { buildSidecarConfig, type BuiltConfig } from './sidecar-config.js';
import type { AgentStateDir } from './state-dir.js';
import { withTrustBundle } from './trust-bundle-update.js';

/** A burst of deltas must not become a burst of fsyncs. */
const SAVE_INTERVAL_MS = 1_000;

export interface ConfigDeps {
  /** The upstreams in force (upstream-set.ts): the config's, or what `setUpstreams` put in their place. */
  readonly upstreams: () => readonly UpstreamSpec[];
  readonly stateDir: AgentStateDir | undefined;
  readonly identity: IdentityManager;
  readonly metrics: AgentMetrics;
  readonly log: Logger;
}

export class ConfigInForce {
  snapshot: VersionedSnapshot | undefined;
  /** Serving what was saved before a restart, not yet confirmed by the control plane. */
  restoredFromDisk = false;
  /** Upstreams named on the command line whose port is not known yet. */
  waiting: readonly string[] = [];
  /** The listeners in force: a listener without a named port keeps its service port across snapshots. */
  private listeners: readonly OutboundListener[] = [];
  private lastSaved = 0;
  private saveTimer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: ConfigDeps) {}

  /** The saved snapshot, if there is a usable one: the sidecar's first config. */
  async restore(): Promise<SidecarConfig | undefined> {
    const { stateDir, log } = this.deps;
    const saved = await stateDir?.loadSnapshot().catch((err: unknown) => {
      log.warn({ err: describeError(err) }, 'saved snapshot unreadable; waiting for the control plane');
      return undefined;
    });
    if (saved === undefined) return undefined;
    try {
      const built = buildSidecarConfig(saved.snapshot, `${saved.epoch}.${saved.version}`, { upstreams: this.deps.upstreams() });
      this.snapshot = saved;
      this.restoredFromDisk = true;
      this.waiting = built.waiting;
      this.listeners = built.config.listeners;
      return built.config;
    } catch (err) {
      log.warn({ err: describeError(err) }, 'saved snapshot invalid; waiting for the control plane');
      return undefined;
    }
  }

  /**
   * A snapshot from the watch: validated whole, then put in force in the sidecar. Resolves once the
   * sidecar has it (listeners bound or being retried), never rejects.
   */
  apply(next: VersionedSnapshot, sidecar: Sidecar): Promise<void> {
    const { metrics, log } = this.deps;
    let built: BuiltConfig;
    try {
      built = buildSidecarConfig(next.snapshot, `${next.epoch}.${next.version}`, { upstreams: this.deps.upstreams() }, this.listeners);
    } catch (err) {
      metrics.configUpdates.inc({ result: 'rejected' });
      log.error({ err: describeError(err), version: next.version }, 'config from the control plane rejected; the last good config stays in force');
      return Promise.resolve();
    }
    this.adoptTrustBundle(next.snapshot.trustBundlePem, sidecar);
    this.warnClosedListeners(built);
    this.listeners = built.config.listeners;
    this.snapshot = next;
    this.restoredFromDisk = false;
    this.waiting = built.waiting;
    metrics.configStale.set(0);
    metrics.configVersion.set(next.version);
    this.saveSoon();
    return this.applyToSidecar(built.config, next.version, sidecar);
  }

  /** The upstreams in force changed (upstream-set.ts): the snapshot in force, built again with them. */
  reapply(sidecar: Sidecar): Promise<void> {
    const held = this.snapshot;
    if (held === undefined) return Promise.resolve();
    let built: BuiltConfig;
    try {
      built = buildSidecarConfig(held.snapshot, `${held.epoch}.${held.version}`, { upstreams: this.deps.upstreams() }, this.listeners);
    } catch {
      // The snapshot in force was built once already; a failure now leaves it as it is.
      return Promise.resolve();
    }
    this.warnClosedListeners(built);
    this.listeners = built.config.listeners;
    this.waiting = built.waiting;
    return this.applyToSidecar(built.config, held.version, sidecar);
  }

  /** Root rotation: new sessions (tunnel, pool, control plane) trust the new roots; saved, so a restart does too. */
  private adoptTrustBundle(trustBundlePem: string, sidecar: Sidecar): void {
    const { identity, stateDir, metrics, log } = this.deps;
    const current = identity.current as HeldIdentity;
    if (trustBundlePem === current.trustBundlePem || trustBundlePem.length === 0) return;
    try {
      const updated = withTrustBundle(current, trustBundlePem);
      identity.adopt(updated.identity);
      sidecar.setIdentity(updated.identity);
      void stateDir?.saveIdentity(updated.identity).catch((err: unknown) => log.error({ err: describeError(err) }, 'cannot save the new trust bundle'));
      log.info({ roots: updated.roots }, 'trust bundle updated');
    } catch (err) {
      metrics.configUpdates.inc({ result: 'rejected' });
      log.error({ err: describeError(err) }, 'the trust bundle in force stays');
    }
  }

  /** A caller's working port is going away: say so loudly, with the reason the new snapshot gives. */
  private warnClosedListeners(built: BuiltConfig): void {
    for (const gone of this.listeners) {
      if (built.config.listeners.some((l) => l.bindAddress === gone.bindAddress && l.localPort === gone.localPort && (l.localPort !== 0 || (l.service === gone.service && l.namespace === gone.namespace)))) continue;
      const why = built.waiting.find((w) => w.startsWith(`${gone.namespace}/${gone.service} `));
      this.deps.log.warn({ listener: `${gone.bindAddress}:${gone.localPort}`, upstream: `${gone.namespace}/${gone.service}`, reason: why ?? 'no longer an upstream' }, 'outbound listener closed by the new config');
    }
  }

  private applyToSidecar(next: SidecarConfig, version: number, sidecar: Sidecar): Promise<void> {
    const { metrics, log } = this.deps;
    return sidecar.applyConfig(next).then(
      () => {
        // A listener that cannot bind does not fail the config (it is retried with backoff, and /ready
        // names it): "applied" is said only when every listener bound, else how many did not.
        const failing = sidecar.listenerFailures();
        if (failing.length === 0) {
          metrics.configUpdates.inc({ result: 'applied' });
          return;
        }
        metrics.configUpdates.inc({ result: 'applied-degraded' });
        const named = failing.map((f) => `${f.spec.namespace}/${f.spec.service}:${f.spec.port} on ${f.spec.bindAddress}:${f.spec.localPort}: ${f.reason}`);
        log.warn({ version, listenersFailing: failing.length, failing: named }, `config applied with ${failing.length} outbound listener(s) failing to bind; retrying, /ready is false until they bind`);
      },
      (err: unknown) => {
        metrics.configUpdates.inc({ result: 'failed' });
        log.error({ err: describeError(err), version }, 'the new config could not be applied in full');
      },
    );
  }

  private saveSoon(): void {
    const { stateDir, log } = this.deps;
    if (stateDir === undefined || this.saveTimer !== undefined) return;
    const delay = Math.max(0, SAVE_INTERVAL_MS - (Date.now() - this.lastSaved));
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      this.lastSaved = Date.now();
      const snapshot = this.snapshot;
      if (snapshot !== undefined) void stateDir.saveSnapshot(snapshot).catch((err: unknown) => log.error({ err: describeError(err) }, 'cannot save the config snapshot'));
    }, delay);
  }

  /** On stop, first: no timed save any more. */
  cancelPendingSave(): void {
    clearTimeout(this.saveTimer);
  }

  /** On stop, once the watch is closed: the snapshot in force, saved for the next start. */
  async saveNow(): Promise<void> {
    if (this.snapshot !== undefined) await this.deps.stateDir?.saveSnapshot(this.snapshot).catch(() => undefined);
  }
}
