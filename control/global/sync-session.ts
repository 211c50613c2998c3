/**
 * The global's end of one zone's sync stream. The zone's certificate has been checked (it names the
 * zone); the first message must be its hello, within `helloTimeoutMs`. From then on: the zone's deltas
 * go to the state machine (acked when applied), and the catalogue is pushed down whenever it changed and
 * the stream can take it. Any refusal ends the stream with an error message; the state keeps everything
 * the zone had synced before it.
 */
import { describeError, isTrellisError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { chunkDelta } from '../zone-sync/chunking.js';
import { LineStream } from '../zone-sync/line-stream.js';
import { DOWN_KINDS, malformed, parseUpMessage, ZONE_SYNC_LIMITS, type DownKind } from '../zone-sync/protocol.js';
import type { Duplex } from 'node:stream';
import type { GlobalState } from './global-state.js';

export interface SessionHost {
  readonly state: GlobalState;
  readonly log: Logger;
  readonly helloTimeoutMs: number;
  /** The zone's records changed: publish and write them, then push to every session. */
  readonly catalogueChanged: () => void;
  readonly onRefused: (zone: string, code: string) => void;
  readonly onOpen: (session: GlobalSyncSession) => void;
  readonly onClose: (session: GlobalSyncSession) => void;
}

export class GlobalSyncSession {
  private readonly lines: LineStream;
  private connection: number | undefined;
  /** Catalogue versions sent per kind (-1: nothing yet, a reset is due). */
  private sent: Record<DownKind, number> | undefined;
  private pushing = false;
  private readonly helloTimer: NodeJS.Timeout;

  constructor(
    private readonly host: SessionHost,
    stream: Duplex,
    readonly zone: string,
  ) {
    this.lines = new LineStream(stream, ZONE_SYNC_LIMITS.maxMessageBytes, {
      onLine: (line, bytes) => this.receive(line, bytes),
      onClose: (err) => this.closed(err),
    });
    this.helloTimer = setTimeout(() => this.lines.fail(malformed(`no hello within ${host.helloTimeoutMs} ms`)), host.helloTimeoutMs);
    this.helloTimer.unref();
  }

  /** Sends what the zone has not seen yet, when the stream can take it; coalesces while it cannot. */
  push(): void {
    if (this.sent === undefined || this.pushing || this.lines.isClosed) return;
    this.pushing = true;
    this.lines.whenWritable(() => {
      this.pushing = false;
      if (this.sent === undefined || this.lines.isClosed) return;
      for (const kind of DOWN_KINDS) {
        const delta = this.host.state.downDelta(this.zone, kind, this.sent[kind]);
        // Undefined: published versions the store does not hold yet; the write's end pushes again.
        if (delta === undefined || (!delta.reset && delta.to === this.sent[kind])) continue;
        this.lines.send(chunkDelta(kind, delta, true, ZONE_SYNC_LIMITS, (err) => this.host.log.error({ zone: this.zone, err: describeError(err) }, 'a catalogue record is too large to send; the zone gets the rest')));
        this.sent[kind] = delta.to;
      }
    });
  }

  close(): void {
    this.lines.close();
  }

  private receive(line: string, bytes: number): void {
    try {
      const message = parseUpMessage(line);
      if (this.connection === undefined) {
        if (message.t !== 'hello') throw malformed(`the first message must be a hello, not a ${message.t}`);
        clearTimeout(this.helloTimer);
        const { connection, welcome, down } = this.host.state.hello(this.zone, message);
        this.connection = connection;
        this.sent = down;
        this.lines.send([`${JSON.stringify(welcome)}\n`]);
        this.host.onOpen(this);
        this.host.log.info({ zone: this.zone, epoch: message.epoch, applied: welcome.applied }, 'zone connected');
        this.push();
        // Coming back online may have changed the catalogue for the others.
        this.host.catalogueChanged();
        return;
      }
      if (message.t === 'hello') throw malformed('a second hello on one stream');
      const { ack, changed } = this.host.state.receive(this.zone, this.connection, message, bytes);
      if (ack !== undefined) this.lines.send([`${JSON.stringify({ t: 'ack', ...ack })}\n`]);
      if (changed) this.host.catalogueChanged();
    } catch (err) {
      this.host.onRefused(this.zone, isTrellisError(err) ? err.code : 'internal');
      this.host.log.warn({ zone: this.zone, err: describeError(err) }, 'zone sync message refused; the stream ends and the zone reconnects');
      this.lines.fail(err);
    }
  }

  private closed(err: Error | undefined): void {
    clearTimeout(this.helloTimer);
    if (this.connection !== undefined) {
      this.host.state.disconnect(this.zone, this.connection);
      this.host.log.info({ zone: this.zone, err: err === undefined ? undefined : describeError(err) }, 'zone stream ended; its records stay until its lease says otherwise');
    }
    this.host.onClose(this);
  }
}
