/**
 * The receiver's side of one kind: the records it holds, at one version, and the chunks of the delta in
 * flight. A delta is applied when its last chunk arrives, all at once, or not at all:
 *
 * - its first chunk must follow the version held (`from`), or be a reset (from 0); each further chunk
 *   must repeat from/to/reset and count `seq` up by one: anything else is TRELLIS_ZONE_SYNC_OUT_OF_ORDER;
 * - every record is validated, and `guard` may refuse a key (the global refuses a zone's record of
 *   another zone: TRELLIS_ZONE_SYNC_FOREIGN_RECORD);
 * - held chunks are bounded in bytes, the result in records (TRELLIS_ZONE_SYNC_TOO_LARGE).
 *
 * A refusal drops the chunks in flight and leaves the records and the version exactly as they were: a
 * bad message costs the sender a reconnect, never the state it had already synced.
 */
import { TrellisError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';
import { ZONE_SYNC_LIMITS, type DeltaMessage, type RemovalReason } from './protocol.js';
import { validateRecord } from './records.js';

export interface ReplicaChange<R> {
  readonly key: string;
  /** Undefined when the key was removed. */
  readonly record: R | undefined;
  readonly reason?: RemovalReason;
}

export interface AppliedDelta<R> {
  readonly version: number;
  readonly at: number;
  readonly changes: readonly ReplicaChange<R>[];
}

interface InFlight {
  readonly from: number;
  readonly to: number;
  readonly reset: boolean;
  seq: number;
  bytes: number;
  at: number;
  readonly upserts: Map<string, unknown>;
  readonly removes: Map<string, RemovalReason>;
}

export interface ReplicaLimits {
  readonly maxDeltaBytes: number;
  readonly maxRecords: number;
}

export function outOfOrder(message: string, details: Record<string, unknown>): TrellisError {
  return new TrellisError(CODE.ZONE_SYNC_OUT_OF_ORDER, `zone sync: ${message}`, { side: 'downstream', retryable: true, details });
}

export class SyncReplica<R> {
  private readonly held = new Map<string, R>();
  private current: number;
  private inFlight: InFlight | undefined;

  constructor(
    readonly kind: string,
    private readonly limits: ReplicaLimits = { maxDeltaBytes: ZONE_SYNC_LIMITS.maxDeltaBytes, maxRecords: ZONE_SYNC_LIMITS.maxRecordsPerKind },
    start?: { version: number; records: Iterable<[string, R]> },
  ) {
    this.current = start?.version ?? 0;
    for (const [key, record] of start?.records ?? []) this.held.set(key, record);
  }

  get version(): number {
    return this.current;
  }

  get size(): number {
    return this.held.size;
  }

  get(key: string): R | undefined {
    return this.held.get(key);
  }

  records(): IterableIterator<[string, R]> {
    return this.held.entries();
  }

  /** Forgets the chunks in flight (the stream carrying them ended); the records stay. */
  abort(): void {
    this.inFlight = undefined;
  }

  /**
   * One chunk, with its size on the wire. Returns the applied delta on its last chunk, undefined before;
   * throws (and forgets the chunks in flight) on anything out of order, malformed or too large.
   */
  receive(message: DeltaMessage, bytes: number, guard: (key: string) => void = () => undefined): AppliedDelta<R> | undefined {
    try {
      const flight = this.accept(message, bytes);
      for (const { key, record } of message.upserts) {
        guard(key);
        flight.removes.delete(key);
        flight.upserts.set(key, validateRecord(message.kind, key, record));
      }
      for (const { key, reason } of message.removes) {
        guard(key);
        flight.upserts.delete(key);
        flight.removes.set(key, reason);
      }
      if (!message.last) return undefined;
      this.inFlight = undefined;
      return this.apply(flight);
    } catch (err) {
      this.inFlight = undefined;
      throw err;
    }
  }

  private accept(message: DeltaMessage, bytes: number): InFlight {
    const details = { kind: this.kind, held: this.current, from: message.from, to: message.to, seq: message.seq };
    let flight = this.inFlight;
    if (flight === undefined) {
      if (message.seq !== 0) throw outOfOrder(`${this.kind} chunk ${message.seq} arrived without the chunks before it`, details);
      if (!message.reset && message.from !== this.current) throw outOfOrder(`${this.kind} delta from version ${message.from}, but version ${this.current} is held`, details);
      flight = { from: message.from, to: message.to, reset: message.reset, seq: 0, bytes: 0, at: 0, upserts: new Map(), removes: new Map() };
      this.inFlight = flight;
    } else if (message.seq !== flight.seq + 1 || message.from !== flight.from || message.to !== flight.to || message.reset !== flight.reset) {
      throw outOfOrder(`${this.kind} chunk ${message.seq} (${message.from}→${message.to}) does not continue chunk ${flight.seq} (${flight.from}→${flight.to})`, details);
    } else {
      flight.seq = message.seq;
    }
    if (!message.reset && message.to < this.current) throw outOfOrder(`${this.kind} delta leads back to version ${message.to}`, details);
    flight.bytes += bytes;
    flight.at = Math.max(flight.at, message.at);
    if (flight.bytes > this.limits.maxDeltaBytes) {
      throw new TrellisError(CODE.ZONE_SYNC_TOO_LARGE, `zone sync: the ${this.kind} delta ${flight.from}→${flight.to} is over ${this.limits.maxDeltaBytes} bytes`, { side: 'downstream', details: { kind: this.kind, limit: this.limits.maxDeltaBytes } });
    }
    return flight;
  }

  private apply(flight: InFlight): AppliedDelta<R> {
    const changes: ReplicaChange<R>[] = [];
    let size = this.held.size;
    if (flight.reset) {
      size = flight.upserts.size;
    } else {
      for (const key of flight.upserts.keys()) if (!this.held.has(key)) size++;
      for (const key of flight.removes.keys()) if (this.held.has(key)) size--;
    }
    if (size > this.limits.maxRecords) {
      throw new TrellisError(CODE.ZONE_SYNC_TOO_LARGE, `zone sync: ${size} ${this.kind} records would be held, over the limit of ${this.limits.maxRecords}`, { side: 'downstream', details: { kind: this.kind, limit: this.limits.maxRecords } });
    }
    // Checked everything; from here nothing throws.
    if (flight.reset) {
      // A reset is the owner's whole set: what it no longer names, it removed.
      for (const key of [...this.held.keys()]) {
        if (!flight.upserts.has(key)) {
          this.held.delete(key);
          changes.push({ key, record: undefined, reason: 'deleted' });
        }
      }
    }
    for (const [key, reason] of flight.removes) {
      if (this.held.delete(key)) changes.push({ key, record: undefined, reason });
    }
    for (const [key, record] of flight.upserts) {
      this.held.set(key, record as R);
      changes.push({ key, record: record as R });
    }
    this.current = flight.to;
    return { version: flight.to, at: flight.at, changes };
  }
}
