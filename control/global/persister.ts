/**
 * Write-behind persistence of the global's state: every `intervalMs`, the zones changed since the last
 * write are written whole (one record per zone), and the meta record when the version reservation or the
 * policies changed. Writes never sit on the sync path; a restart loses at most the last interval, which
 * the zones send again (they resume from the versions the store holds), and never reuses a catalogue
 * version (the reservation is written before versions run past it; `GlobalState.reservationDue`).
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

  constructor(
    private readonly state: GlobalState,
    private readonly store: GlobalStore,
    private readonly log: Logger,
    private readonly metrics: GlobalMetrics,
    intervalMs: number,
  ) {
    this.timer = setInterval(() => void this.flush(), intervalMs);
    this.timer.unref();
  }

  metaChanged(): void {
    this.metaDirty = true;
  }

  /** Writes what is dirty now; one write pass at a time. */
  flush(): Promise<void> {
    this.running = this.running.then(() => this.writeDirty());
    return this.running;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  private async writeDirty(): Promise<void> {
    const reservation = this.state.reservationDue();
    if (reservation !== undefined || this.metaDirty) {
      this.metaDirty = false;
      await this.write(() => this.store.saveMeta(this.state.meta()), 'meta', () => (this.metaDirty = true));
    }
    const zones = [...this.state.dirty];
    this.state.dirty.clear();
    for (const name of zones) {
      const snapshot = this.state.snapshot(name);
      if (snapshot !== undefined) await this.write(() => this.store.saveZone(snapshot), name, () => this.state.dirty.add(name));
    }
  }

  private async write(work: () => Promise<void>, what: string, retry: () => void): Promise<void> {
    try {
      await work();
      this.metrics.storeWrites.inc({ result: 'ok' });
    } catch (err) {
      this.metrics.storeWrites.inc({ result: 'error' });
      this.log.error({ err: describeError(err), record: what }, 'cannot write to the global store; retrying at the next interval');
      retry();
    }
  }
}
