/**
 * The sender's side of one kind: records by key, each stamped with the version of its last change, and
 * tombstones for removed keys, so that `since(v)` gives exactly what changed after `v`. Versions only
 * grow. Tombstones are kept up to a bound; when the oldest is dropped, `floor` rises to its version and
 * a receiver older than the floor gets a reset (the whole set) instead of a delta.
 *
 * A change log (version, key) in version order makes `since` cost the number of changes since `v`, not
 * the size of the set: the benchmark's global holds 10,000 records and sends one change to nine zones.
 */
import type { RemovalReason } from './protocol.js';

export interface VersionedEntry<R> {
  readonly version: number;
  /** Undefined for a tombstone. */
  readonly record: R | undefined;
  /** The record serialised once, for comparing and for sizing chunks. */
  readonly json: string;
  readonly reason?: RemovalReason;
  /** When the change was made (ms since the epoch). */
  readonly at: number;
}

export interface SetDelta<R> {
  readonly from: number;
  readonly to: number;
  readonly reset: boolean;
  readonly at: number;
  readonly upserts: readonly { key: string; record: R; json: string }[];
  readonly removes: readonly { key: string; reason: RemovalReason }[];
}

export const DEFAULT_MAX_TOMBSTONES = 100_000;

export class VersionedSet<R> {
  private readonly entries = new Map<string, VersionedEntry<R>>();
  private log: { version: number; key: string }[] = [];
  private tombstones = 0;
  private current: number;
  private lowest: number;

  constructor(
    private readonly now: () => number = Date.now,
    private readonly maxTombstones: number = DEFAULT_MAX_TOMBSTONES,
    start: { version: number; floor: number } = { version: 0, floor: 0 },
  ) {
    this.current = start.version;
    this.lowest = start.floor;
  }

  get version(): number {
    return this.current;
  }

  /** The oldest version a delta can start from. */
  get floor(): number {
    return this.lowest;
  }

  get size(): number {
    return this.entries.size - this.tombstones;
  }

  get(key: string): R | undefined {
    return this.entries.get(key)?.record;
  }

  /** Every live record (not tombstones). */
  *records(): IterableIterator<[string, R]> {
    for (const [key, entry] of this.entries) if (entry.record !== undefined) yield [key, entry.record];
  }

  /** Every entry, tombstones included, for persisting. */
  *all(): IterableIterator<[string, VersionedEntry<R>]> {
    yield* this.entries;
  }

  /** Sets `key` to `record`; returns false (and changes nothing) when it holds an equal record already. */
  set(key: string, record: R, json: string = JSON.stringify(record)): boolean {
    const existing = this.entries.get(key);
    if (existing?.record !== undefined && existing.json === json) return false;
    if (existing !== undefined && existing.record === undefined) this.tombstones--;
    this.stamp(key, { version: ++this.current, record, json, at: this.now() });
    return true;
  }

  /** Removes `key`, leaving a tombstone; returns false when it holds nothing. */
  remove(key: string, reason: RemovalReason = 'deleted'): boolean {
    const existing = this.entries.get(key);
    if (existing === undefined || existing.record === undefined) return false;
    this.tombstones++;
    this.stamp(key, { version: ++this.current, record: undefined, json: '', reason, at: this.now() });
    this.pruneTombstones();
    return true;
  }

  /** Puts back an entry as it was persisted (its version kept); used once at start, in any order. */
  restore(key: string, entry: VersionedEntry<R>): void {
    const existing = this.entries.get(key);
    if (existing !== undefined && existing.version >= entry.version) return;
    if (existing?.record === undefined && existing !== undefined) this.tombstones--;
    if (entry.record === undefined) this.tombstones++;
    this.entries.set(key, entry);
    this.current = Math.max(this.current, entry.version);
    this.log = [];
    this.needsReindex = true;
  }

  /** Continues numbering after `version` (a reservation made before a crash), keeping every entry. */
  skipTo(version: number): void {
    if (version > this.current) this.current = version;
  }

  /**
   * What changed after `from`, optionally only keys `include` accepts. A reset (every live record) when
   * `from` is older than the floor or newer than anything here (the receiver's state came from elsewhere).
   */
  since(from: number, include: (key: string) => boolean = () => true): SetDelta<R> {
    if (from < this.lowest || from > this.current) return this.snapshot(include);
    this.reindex();
    const upserts: { key: string; record: R; json: string }[] = [];
    const removes: { key: string; reason: RemovalReason }[] = [];
    let at = 0;
    for (let i = this.firstAfter(from); i < this.log.length; i++) {
      const item = this.log[i] as { version: number; key: string };
      const entry = this.entries.get(item.key);
      // Superseded log items point at a key changed again later; only its newest change is sent.
      if (entry === undefined || entry.version !== item.version || !include(item.key)) continue;
      at = Math.max(at, entry.at);
      if (entry.record === undefined) removes.push({ key: item.key, reason: entry.reason ?? 'deleted' });
      else upserts.push({ key: item.key, record: entry.record, json: entry.json });
    }
    return { from, to: this.current, reset: false, at, upserts, removes };
  }

  /** Every live record, as a reset to the current version. */
  snapshot(include: (key: string) => boolean = () => true): SetDelta<R> {
    const upserts: { key: string; record: R; json: string }[] = [];
    let at = 0;
    for (const [key, entry] of this.entries) {
      if (entry.record === undefined || !include(key)) continue;
      upserts.push({ key, record: entry.record, json: entry.json });
      at = Math.max(at, entry.at);
    }
    return { from: 0, to: this.current, reset: true, at, upserts, removes: [] };
  }

  private needsReindex = false;

  private stamp(key: string, entry: VersionedEntry<R>): void {
    this.reindex();
    this.entries.set(key, entry);
    this.log.push({ version: entry.version, key });
    // Superseded items pile up under churn: rebuild once they outnumber the entries.
    if (this.log.length > 2 * this.entries.size + 1024) this.needsReindex = true;
  }

  private reindex(): void {
    if (!this.needsReindex) return;
    this.needsReindex = false;
    this.log = [...this.entries].map(([key, e]) => ({ version: e.version, key })).sort((a, b) => a.version - b.version);
  }

  private firstAfter(version: number): number {
    let lo = 0;
    let hi = this.log.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.log[mid] as { version: number }).version <= version) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private pruneTombstones(): void {
    if (this.tombstones <= this.maxTombstones) return;
    // The oldest tombstones go first; a receiver that still needed them gets a reset.
    const dead = [...this.entries].filter(([, e]) => e.record === undefined).sort((a, b) => a[1].version - b[1].version);
    for (const [key, entry] of dead.slice(0, this.tombstones - this.maxTombstones)) {
      this.entries.delete(key);
      this.tombstones--;
      this.lowest = Math.max(this.lowest, entry.version);
    }
    this.needsReindex = true;
  }
}
