/**
 * Persistence of the global's state, and the gate between a change and the zones: a change is published
 * into the catalogue, the zones it touched (and the meta record, for policies or the version reservation)
 * are written whole, and only once every write succeeded are the new versions marked durable and pushed
 * (`onDurable`). A write pass starts as soon as a change asks for one (`flushSoon`, one pass at a time,
 * changes coalescing while one runs) and every `intervalMs` to retry failed writes. Writes never sit on
 * the zones' upload path (deltas are applied and acked at once); they sit between a change and its
 * push down, so no zone is ever told a version the store does not hold, and a global killed at any moment
 * resumes every zone with exact deltas (docs/architecture.md, "Zones": restarts). Catalogue versions are
 * reserved in the meta record before they run past it (`GlobalState.reservationDue`), so they only grow.
 */
import { describeError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { GlobalMetrics } from './global-metrics.js';
import type { GlobalState } from './global-state.js';
import type { GlobalStore } from './global-store.js';

export class Persister {
  private readonly timer: NodeJS.Timeout;
  private running: Promise<void> = Promise.resolve();
  private metaDirty = true;
  private queued = false;
  /** The last pass failed: passes wait for the interval, so a store that is down is not hammered (nor the log). */
  private failing = false;

  constructor(
    private readonly state: GlobalState,
    private readonly store: Pick<GlobalStore, 'saveMeta' | 'saveZone'>,
    private readonly log: Logger,
    private readonly metrics: GlobalMetrics,
    intervalMs: number,
    /** Everything published is in the store: the sessions may push it. */
    private readonly onDurable: () => void = () => undefined,
  ) {
    this.timer = setInterval(() => this.queue(), intervalMs);
    this.timer.unref();
  }

  metaChanged(): void {
    this.metaDirty = true;
  }

  /** A pass after the one running (if any); calls while it waits share it. While writes fail, the interval retries. */
  flushSoon(): void {
    if (!this.failing) this.queue();
  }

  private queue(): void {
    if (this.queued) return;
    this.queued = true;
    this.running = this.running.then(() => {
      this.queued = false;
      return this.writeDirty();
    });
  }

  /** Publishes and writes what is pending now; resolves when that pass is done. */
  flush(): Promise<void> {
    this.running = this.running.then(() => this.writeDirty());
    return this.running;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  private async writeDirty(): Promise<void> {
    // Everything below up to the first await is one synchronous step: the snapshots are of one moment,
    // and the versions marked durable afterwards are exactly theirs.
    const published = this.state.publish();
    const versions = this.state.versions();
    if (this.state.metaDirty) {
      this.state.metaDirty = false;
      this.metaDirty = true;
    }
    const reservation = this.state.reservationDue();
    const meta = reservation !== undefined || this.metaDirty ? this.state.meta() : undefined;
    this.metaDirty = false;
    const zones = [...this.state.dirty];
    this.state.dirty.clear();
    const snapshots = zones.map((name) => this.state.snapshot(name)).filter((s) => s !== undefined);
    let ok = true;
    if (meta !== undefined) ok = (await this.write(() => this.store.saveMeta(meta), 'meta', () => (this.metaDirty = true))) && ok;
    for (const snapshot of snapshots) ok = (await this.write(() => this.store.saveZone(snapshot), snapshot.name, () => this.state.dirty.add(snapshot.name))) && ok;
    this.failing = !ok;
    if (!ok) return;
    this.state.markDurable(versions);
    if (published || meta !== undefined || snapshots.length > 0) this.onDurable();
  }

  private async write(work: () => Promise<void>, what: string, retry: () => void): Promise<boolean> {
    try {
      await work();
      this.metrics.storeWrites.inc({ result: 'ok' });
      return true;
    } catch (err) {
      this.metrics.storeWrites.inc({ result: 'error' });
      this.log.error({ err: describeError(err), record: what }, 'cannot write to the global store; retrying at the next interval');
      retry();
      return false;
    }
  }
}
