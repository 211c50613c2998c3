/**
 * The open connections or streams a component must account for at shutdown. `add` returns the function
 * that removes the entry (called when its connection has ended and been counted); `whenEmpty` resolves once
 * nothing is left, so `stop()` resolves only after every cut connection finished its bookkeeping: a socket
 * reset now closes a turn or two later, and a stopped sidecar must not report connections still open.
 */
export class TrackedSet<T> {
  private readonly entries = new Set<T>();
  private waiters: (() => void)[] = [];

  add(entry: T): () => void {
    this.entries.add(entry);
    return () => {
      if (!this.entries.delete(entry) || this.entries.size > 0) return;
      const waiters = this.waiters;
      this.waiters = [];
      for (const resolve of waiters) resolve();
    };
  }

  get size(): number {
    return this.entries.size;
  }

  /** A copy, so callers may cut entries (which removes them) while iterating. */
  snapshot(): T[] {
    return [...this.entries];
  }

  /**
   * Resolves true once nothing is left, or false after `limitMs` if something still is: a stop must end
   * even if an entry was never removed (that would be a bug, and the caller logs it).
   */
  whenEmpty(limitMs: number): Promise<boolean> {
    if (this.entries.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve(false);
      }, limitMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.waiters.push(done);
    });
  }
}

/** How long a stop waits, after cutting, for cut connections to close and be counted. */
export const SETTLE_AFTER_CUT_MS = 1_000;
