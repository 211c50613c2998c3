/**
 * The global's open sync sessions, one per zone, and the push to all of them: coalesced to one pass per
 * turn of the event loop however many changes a turn made.
 */
import type { Logger } from '../../common/log.js';
import { GLOBAL_DEFAULTS } from './global-config.js';
import type { GlobalMetrics } from './global-metrics.js';
import type { GlobalState } from './global-state.js';
import type { SessionHost, GlobalSyncSession } from './sync-session.js';

export class SessionHub {
  private readonly sessions = new Map<string, GlobalSyncSession>();
  private pushQueued = false;
  readonly host: SessionHost;

  /** `publish`: write the changes to the store, whose success pushes them (`pushAll`, from the persister). */
  constructor(state: GlobalState, metrics: GlobalMetrics, log: Logger, publish: () => void) {
    this.host = {
      state,
      log,
      helloTimeoutMs: GLOBAL_DEFAULTS.helloTimeoutMs,
      catalogueChanged: publish,
      onRefused: (zone, code) => metrics.refused.inc({ zone, code }),
      onOpen: (s) => {
        this.sessions.set(s.zone, s);
        if ((state.status(s.zone)?.connects ?? 0) > 1) metrics.reconnects.inc({ zone: s.zone });
      },
      onClose: (s) => {
        if (this.sessions.get(s.zone) === s) this.sessions.delete(s.zone);
      },
    };
  }

  pushAll(): void {
    if (this.pushQueued) return;
    this.pushQueued = true;
    setImmediate(() => {
      this.pushQueued = false;
      for (const s of this.sessions.values()) s.push();
    });
  }

  closeAll(): void {
    for (const s of this.sessions.values()) s.close();
  }
}
