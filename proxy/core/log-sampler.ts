/**
 * A warning that a peer can repeat at will (a denial, a refused stream, a refused session) is logged at a
 * bounded rate: the first occurrence of a key (say a peer and the rule that denied it) is written at once;
 * later ones are only counted, and at most one summary line per key and interval says how many were not
 * written. Without this a flood of denied streams turns the log into the flood (one line each); metrics
 * still count every occurrence, the sampler bounds only what is written.
 *
 * A key stays quiet for as long as it keeps repeating (one summary per interval); once a whole interval
 * passes without it, its next occurrence is written at once again. Keys are bounded: beyond `maxKeys`,
 * occurrences share one overflow key, so a peer cycling through names cannot grow memory either.
 *
 *   const denials = new LogSampler(logger, 10_000);
 *   denials.warn(`${peer}|${rule}`, { correlationId, source: peer, decidedBy: rule }, 'TCP stream denied by policy');
 */
import type { Logger } from '../../common/log.js';

/** Above this many distinct keys in one interval, occurrences are counted under OVERFLOW_KEY. */
export const DEFAULT_SAMPLER_MAX_KEYS = 1_024;
const OVERFLOW_KEY = '\u0000overflow';

interface KeyState {
  /** Occurrences not written since the last summary. */
  suppressed: number;
  /** The fields and message of the first suppressed occurrence, repeated in the summary. */
  fields: Record<string, unknown> | undefined;
  msg: string;
}

export class LogSampler {
  private keys = new Map<string, KeyState>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly logger: Pick<Logger, 'warn'>,
    private readonly intervalMs: number,
    private readonly maxKeys = DEFAULT_SAMPLER_MAX_KEYS,
  ) {}

  /** Writes the line at warn level unless `key` was written within the interval; returns whether it was. */
  warn(key: string, fields: Record<string, unknown>, msg: string): boolean {
    let state = this.keys.get(key);
    if (state === undefined && this.keys.size >= this.maxKeys) {
      key = OVERFLOW_KEY;
      state = this.keys.get(key);
    }
    if (state === undefined) {
      this.keys.set(key, { suppressed: 0, fields: undefined, msg });
      this.logger.warn(fields, msg);
      this.arm();
      return true;
    }
    if (state.suppressed === 0) {
      state.fields = fields;
      state.msg = msg;
    }
    state.suppressed += 1;
    return false;
  }

  /** Writes the pending summaries now and stops the timer (shutdown). */
  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.flush();
    this.keys.clear();
  }

  private arm(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.flush(), this.intervalMs);
    // A pending summary must never keep the process alive.
    this.timer.unref();
  }

  private flush(): void {
    const next = new Map<string, KeyState>();
    for (const [key, state] of this.keys) {
      if (state.suppressed === 0) continue;
      this.logger.warn({ ...state.fields, suppressed: state.suppressed, intervalMs: this.intervalMs }, `${state.msg} (repeated: ${state.suppressed} more not logged in the last ${Math.round(this.intervalMs / 1000)} s)`);
      // Still repeating: stays quiet through the next interval too.
      next.set(key, { suppressed: 0, fields: undefined, msg: state.msg });
    }
    this.keys = next;
    if (next.size === 0 && this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}
