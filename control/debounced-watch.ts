/**
 * Noticing that files the control plane reads changed: fs.watch on their directory (so an atomic rename
 * over a file is seen, and a Kubernetes Secret volume's `..data` symlink swap), debounced so that an
 * editor's several writes make one reload, plus a poll as the fallback where fs.watch misses events
 * (some network and container file systems). Used for the policy directory and the CA dir's bundle.pem.
 */
import { watch, type FSWatcher } from 'node:fs';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';

export interface DebouncedWatchOptions {
  readonly dir: string;
  /** Whether an fs.watch event for this name matters (null: the platform did not say which); default all. */
  readonly relevant?: (file: string | null) => boolean;
  /** The poll's cheap check (sizes, mtimes, content): true when a reload is due. */
  readonly changed: () => Promise<boolean>;
  /** Called once per burst of changes, `debounceMs` after the last. */
  readonly onChange: () => void;
  readonly debounceMs: number;
  readonly pollIntervalMs: number;
  readonly log: Logger;
  /** What is watched, for the log lines ("policy directory", "trust bundle"). */
  readonly what: string;
}

export class DebouncedWatch {
  private watcher: FSWatcher | undefined;
  private poller: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: DebouncedWatchOptions) {}

  start(): void {
    const { dir, log, what } = this.options;
    try {
      this.watcher = watch(dir, (_event, file) => {
        if (this.options.relevant === undefined || this.options.relevant(file)) this.schedule();
      });
      this.watcher.on('error', (err) => log.warn({ err: describeError(err), dir }, `${what} watch failed; relying on polling`));
    } catch (err) {
      log.warn({ err: describeError(err), dir }, `cannot watch the ${what}; relying on polling`);
    }
    this.poller = setInterval(() => {
      void this.options.changed().then((changed) => {
        if (changed) this.schedule();
      }, () => undefined);
    }, this.options.pollIntervalMs);
    this.poller.unref();
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    clearInterval(this.poller);
    clearTimeout(this.debounce);
  }

  private schedule(): void {
    if (this.closed) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => this.options.onChange(), this.options.debounceMs);
  }
}
