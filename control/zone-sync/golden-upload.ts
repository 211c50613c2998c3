/**
 * Sends this zone's golden-metrics edge view (the last 5 minutes of its window, control/golden/) to the
 * global every `intervalMs`, as its own request (`POST /v1/zone/golden`) on the sync stream's HTTP/2
 * session, never as a message on the sync stream: the stream's parsers refuse a message or delta kind
 * they do not know and drop the stream, so an older global would lose zone sync to it. An older global
 * answers the path with 404 instead; the zone then stops sending on that session (a new one, after a
 * reconnect, tries again). At most `ZONE_GOLDEN_LIMITS.maxEdges` pairs go up, the busiest; the rest are
 * counted in `truncated`. A new session (first contact, a reconnect) gets a report within 5 s. Nothing
 * waits on it: a failed send is logged and the next interval sends anew.
 */
import type { ClientHttp2Session } from 'node:http2';
import { CODE } from '../../common/error-codes.js';
import { describeError, isTrellisError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { WINDOW_SLOT_MS, type GoldenWindow } from '../golden/golden-window.js';
import { ZONE_GOLDEN_INTERVAL_MS, ZONE_GOLDEN_LIMITS } from './golden-limits.js';
import { postJson } from './global-client.js';
import { ZONE_SYNC_PATHS } from './protocol.js';

/** The view sent up: the last 5 minutes, as the zone's own UI shows by default. */
export const ZONE_GOLDEN_WINDOW_MS = 5 * WINDOW_SLOT_MS;

export interface GoldenUploadOptions {
  readonly zone: string;
  readonly window: GoldenWindow;
  readonly session: () => ClientHttp2Session | undefined;
  readonly log: Logger;
  readonly intervalMs?: number;
}

/** The body for the global: the busiest pairs first, bounded. */
export function zoneGoldenBody(zone: string, window: GoldenWindow): { zone: string; windowMs: number; truncated: number; edges: unknown[] } {
  const all = window.edges(ZONE_GOLDEN_WINDOW_MS).sort((a, b) => b.requests + b.denied - (a.requests + a.denied));
  const edges = all.slice(0, ZONE_GOLDEN_LIMITS.maxEdges).map((e) => ({ source: e.source, destination: e.destination, protocol: e.protocol, seenBy: e.seenBy, requests: e.requests, failures: e.failures, denied: e.denied, latency: e.latency }));
  return { zone, windowMs: ZONE_GOLDEN_WINDOW_MS, truncated: all.length - edges.length, edges };
}

/** How often the uploader looks for a new session: a zone that (re)connects reports within this, not a whole interval later. */
const CHECK_MS = ZONE_GOLDEN_LIMITS.minIntervalMs;

export class GoldenUpload {
  private readonly timer: NodeJS.Timeout;
  private refusedBy: ClientHttp2Session | undefined;
  private sentOn: ClientHttp2Session | undefined;
  private sentAt = 0;
  private sending = false;

  constructor(private readonly options: GoldenUploadOptions) {
    this.timer = setInterval(() => void this.tick(), CHECK_MS);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    const session = this.options.session();
    if (session === undefined) return;
    if (session !== this.sentOn || Date.now() - this.sentAt >= (this.options.intervalMs ?? ZONE_GOLDEN_INTERVAL_MS)) await this.sendOnce();
  }

  /** One send now (also what the timer does); resolves whether or not the global took it. */
  async sendOnce(): Promise<boolean> {
    const session = this.options.session();
    if (session === undefined || session === this.refusedBy || this.sending) return false;
    this.sending = true;
    try {
      this.sentOn = session;
      this.sentAt = Date.now();
      await postJson(session, ZONE_SYNC_PATHS.golden, zoneGoldenBody(this.options.zone, this.options.window));
      return true;
    } catch (err) {
      if (isTrellisError(err) && err.code === CODE.CONTROL_NOT_FOUND) {
        this.refusedBy = session;
        this.options.log.info({}, 'the global control plane does not take golden metrics (older version); not sending them on this session');
      } else {
        this.options.log.warn({ err: describeError(err) }, 'golden metrics not sent to the global control plane');
      }
      return false;
    } finally {
      this.sending = false;
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}
