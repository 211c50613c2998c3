/**
 * The zone's copy of the global catalogue (the down replicas), kept in its data dir so a zone restarted
 * while the global is down still serves what it last knew, and resumes with deltas when the global is
 * back:
 *
 *   <data-dir>/global/catalogue.json   {globalEpoch, exportDefault, confirmedAt, kinds: {<kind>: {version, records}}}
 *
 * Written at most once a second after a change (atomic write); a damaged file is reported and set aside
 * (renamed `.damaged-<ms>`): the catalogue starts empty and the global sends it whole.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/atomic-file.js';
import { describeError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { DOWN_KINDS, type DownKind, type ExportDefault, type Versions } from './protocol.js';
import { validateRecord } from './records.js';
import { SyncReplica } from './replica.js';

export const CATALOGUE_WRITE_INTERVAL_MS = 1_000;

export class CatalogueFile {
  replicas: Record<DownKind, SyncReplica<unknown>>;
  globalEpoch: string | undefined;
  exportDefault: ExportDefault = 'none';
  /** The last moment a live stream confirmed the catalogue (ms), kept so staleness survives a restart. */
  confirmedAt: number | undefined;
  private readonly path: string;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(dataDir: string, private readonly log: Logger) {
    this.path = join(dataDir, 'global', 'catalogue.json');
    this.replicas = Object.fromEntries(DOWN_KINDS.map((k) => [k, new SyncReplica<unknown>(k)])) as Record<DownKind, SyncReplica<unknown>>;
  }

  versions(): Versions<DownKind> {
    return Object.fromEntries(DOWN_KINDS.map((k) => [k, this.replicas[k].version])) as Versions<DownKind>;
  }

  async load(): Promise<void> {
    let text: string;
    try {
      text = await fs.readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    try {
      const value = JSON.parse(text) as { globalEpoch?: unknown; exportDefault?: unknown; kinds?: Record<string, { version?: unknown; records?: unknown }> };
      const replicas = {} as Record<DownKind, SyncReplica<unknown>>;
      for (const kind of DOWN_KINDS) {
        const stored = value.kinds?.[kind];
        const version = typeof stored?.version === 'number' ? stored.version : 0;
        const records = Array.isArray(stored?.records) ? (stored.records as [string, unknown][]) : [];
        // Validated again: the file is input like any message.
        replicas[kind] = new SyncReplica<unknown>(kind, undefined, { version, records: records.map(([key, r]) => [key, validateRecord(kind, key, r)] as [string, unknown]) });
      }
      this.replicas = replicas;
      this.globalEpoch = typeof value.globalEpoch === 'string' ? value.globalEpoch : undefined;
      this.exportDefault = value.exportDefault === 'all' ? 'all' : 'none';
      const confirmedAt = (value as { confirmedAt?: unknown }).confirmedAt;
      this.confirmedAt = typeof confirmedAt === 'number' && confirmedAt <= Date.now() ? confirmedAt : undefined;
    } catch (err) {
      const aside = `${this.path}.damaged-${Date.now()}`;
      await fs.rename(this.path, aside);
      this.log.error({ file: aside, err: describeError(err) }, 'the kept global catalogue is damaged; set aside, the global sends it whole');
    }
  }

  setGlobal(globalEpoch: string, exportDefault: ExportDefault): void {
    this.globalEpoch = globalEpoch;
    this.exportDefault = exportDefault;
    this.confirm(Date.now());
  }

  confirm(at: number): void {
    this.confirmedAt = at;
    this.changed();
  }

  changed(): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.writing = this.writing.then(() => this.write());
    }, CATALOGUE_WRITE_INTERVAL_MS);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.writing = this.writing.then(() => this.write());
    }
    await this.writing;
  }

  private async write(): Promise<void> {
    const kinds = Object.fromEntries(DOWN_KINDS.map((k) => [k, { version: this.replicas[k].version, records: [...this.replicas[k].records()] }]));
    try {
      await fs.mkdir(join(this.path, '..'), { recursive: true, mode: 0o700 });
      await writeFileAtomic(this.path, JSON.stringify({ globalEpoch: this.globalEpoch, exportDefault: this.exportDefault, confirmedAt: this.confirmedAt, kinds }), { mode: 0o600 });
    } catch (err) {
      this.log.error({ err: describeError(err) }, 'cannot keep the global catalogue in the data dir; retrying at the next change');
    }
  }
}
