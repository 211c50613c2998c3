/**
 * The global control plane's state machine, without I/O: what each zone has synced (one replica per up
 * kind), which zones are online, and the catalogue every zone is sent (one versioned set per down kind).
 * The server (`global-server.ts`) feeds it messages and connection events; the store persists its
 * snapshots. The rules it enforces are the protocol's guarantees (docs/architecture.md, "Zones"):
 *
 * - a zone's records change only through deltas on its own stream: keys of another zone are refused;
 * - a stream that ends deletes nothing (its chunks in flight are dropped, its records stay);
 * - a zone whose lease lapses (no message for `leaseMs`) goes offline: its records leave the catalogue
 *   with reason `zone-offline` and come back, with new versions, when it returns;
 * - one connection per zone name: a second one is refused (TRELLIS_ZONE_CONFLICT) while the first lives;
 * - a zone that proves one name (its certificate) and claims another is refused;
 * - no zone is told a catalogue version the store does not hold. Changes wait in `pending` until the
 *   persister publishes them (`publish`, right before it takes its snapshots) and its write succeeds
 *   (`markDurable`); `downDelta` sends nothing of a kind while it has published versions not yet durable.
 *   So a global killed at any moment restarts from a store that holds everything any zone was sent, and
 *   `since(v)` from a zone's version is exact (issue 14: a change told to east, lost by the store, was
 *   never sent again when its owner's resend equalled the stale stored record).
 */
import { randomBytes } from 'node:crypto';
import { TrellisError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';
import { DOWN_KINDS, UP_KINDS, ZONE_SYNC_PROTOCOL_VERSION, ownerOf, type DeltaMessage, type DownKind, type ExportDefault, type HelloMessage, type RemovalReason, type UpKind, type WelcomeMessage } from '../zone-sync/protocol.js';
import { SyncReplica } from '../zone-sync/replica.js';
import { VersionedSet, type SetDelta, type VersionedEntry } from '../zone-sync/versioned-set.js';

export const DEFAULT_ZONE_LEASE_MS = 30_000;

export interface ZoneStatus {
  readonly name: string;
  readonly epoch: string;
  readonly state: 'online' | 'offline';
  readonly connected: boolean;
  readonly lastSeen: number;
  readonly offlineSince?: number;
  readonly versions: Readonly<Record<UpKind, number>>;
  readonly records: Readonly<Record<UpKind, number>>;
  /** Zone change → applied here, for the newest delta of each kind (ms). */
  readonly lagMs: Readonly<Record<UpKind, number>>;
  readonly connects: number;
  readonly leaseExpiries: number;
  /** Resets (whole sets) received per kind: a zone resuming with deltas adds none. */
  readonly resets: Readonly<Record<UpKind, number>>;
}

interface Zone {
  readonly name: string;
  epoch: string;
  replicas: Record<UpKind, SyncReplica<unknown>>;
  online: boolean;
  connection: number | undefined;
  lastSeen: number;
  offlineSince: number | undefined;
  lagMs: Record<UpKind, number>;
  connects: number;
  leaseExpiries: number;
  resets: Record<UpKind, number>;
}

/** One zone as persisted: its replicas and the catalogue entries it owns (with their versions). */
export interface ZoneSnapshot {
  readonly name: string;
  readonly epoch: string;
  readonly online: boolean;
  readonly lastSeen: number;
  readonly versions: Readonly<Record<UpKind, number>>;
  readonly records: Readonly<Record<UpKind, readonly [string, unknown][]>>;
  readonly catalogue: Readonly<Record<UpKind, readonly [string, VersionedEntry<unknown>][]>>;
}

export interface GlobalMeta {
  readonly globalEpoch: string;
  /** Catalogue versions up to here may have been handed out: a restart continues after it. */
  readonly reservedVersion: number;
  readonly policies: readonly [string, VersionedEntry<unknown>][];
}

export interface GlobalStateOptions {
  readonly leaseMs: number;
  readonly exportDefault: ExportDefault;
  readonly now?: () => number;
}

/** Catalogue versions reserved per persisted step: a restart skips past them, never reusing one. */
export const VERSION_RESERVATION = 1_000_000;

function perKind<K extends string, T>(kinds: readonly K[], make: (kind: K) => T): Record<K, T> {
  return Object.fromEntries(kinds.map((k) => [k, make(k)])) as Record<K, T>;
}

/** A catalogue change not published yet: the newest per key wins (a Map keeps the first change's place). */
interface PendingChange {
  readonly record: unknown;
  readonly reason: RemovalReason;
}

export class GlobalState {
  /** What zones are sent: changed only by `publish`, sent only up to the versions the store holds. */
  readonly catalogue: Record<DownKind, VersionedSet<unknown>>;
  private readonly pending: Record<DownKind, Map<string, PendingChange>>;
  private readonly durable: Record<DownKind, number>;
  /** The policies were published since the meta record was last written. */
  metaDirty = false;
  private readonly zones = new Map<string, Zone>();
  private readonly now: () => number;
  private nextConnection = 1;
  readonly globalEpoch: string;
  private reserved: number;
  /** Zones whose persisted form is behind memory. */
  readonly dirty = new Set<string>();

  constructor(private readonly options: GlobalStateOptions, restored?: { meta: GlobalMeta; zones: readonly ZoneSnapshot[] }) {
    this.now = options.now ?? Date.now;
    this.globalEpoch = restored?.meta.globalEpoch ?? randomBytes(12).toString('base64url');
    this.reserved = restored?.meta.reservedVersion ?? 0;
    this.catalogue = perKind(DOWN_KINDS, () => new VersionedSet<unknown>(this.now));
    this.pending = perKind(DOWN_KINDS, () => new Map<string, PendingChange>());
    for (const [key, entry] of restored?.meta.policies ?? []) this.catalogue.policy.restore(key, entry);
    for (const snapshot of restored?.zones ?? []) this.restoreZone(snapshot);
    // Versions published before a crash but never written are skipped, never reused (none was sent).
    for (const kind of DOWN_KINDS) this.catalogue[kind].skipTo(this.reserved);
    // What was restored is what the store holds.
    this.durable = perKind(DOWN_KINDS, (k) => this.catalogue[k].version);
  }

  /** Folds the pending changes into the catalogue (new versions); returns whether any record changed. */
  publish(): boolean {
    let changed = false;
    for (const kind of DOWN_KINDS) {
      const set = this.catalogue[kind];
      const before = set.version;
      for (const [key, change] of this.pending[kind]) {
        if (change.record === undefined) set.remove(key, change.reason);
        else set.set(key, change.record);
      }
      this.pending[kind].clear();
      if (set.version === before) continue;
      changed = true;
      // The policies live in the meta record; up kinds in their zones' records, marked dirty when staged.
      if (kind === 'policy') this.metaDirty = true;
    }
    return changed;
  }

  /** The catalogue versions now, to mark durable once the snapshots taken with them are written. */
  versions(): Record<DownKind, number> {
    return perKind(DOWN_KINDS, (k) => this.catalogue[k].version);
  }

  /** The store holds everything up to `versions` (taken right after a `publish`, before the write). */
  markDurable(versions: Readonly<Record<DownKind, number>>): void {
    for (const kind of DOWN_KINDS) this.durable[kind] = Math.max(this.durable[kind], versions[kind]);
  }

  /** A change waits to be published (the newest per key); one equal to the catalogue's record publishes nothing. */
  private stage(kind: DownKind, key: string, record: unknown, reason: RemovalReason = 'deleted'): void {
    this.pending[kind].set(key, { record, reason });
  }

  get leaseMs(): number {
    return this.options.leaseMs;
  }

  /** The reservation to persist before versions run past it, or undefined when the current one lasts. */
  reservationDue(): number | undefined {
    const highest = Math.max(...DOWN_KINDS.map((k) => this.catalogue[k].version));
    if (highest + VERSION_RESERVATION / 2 < this.reserved) return undefined;
    this.reserved = highest + VERSION_RESERVATION;
    return this.reserved;
  }

  /** A zone's stream said hello: refuse a name mismatch or a second stream, else welcome it. */
  hello(certifiedZone: string, hello: HelloMessage): { connection: number; welcome: WelcomeMessage; down: Record<DownKind, number> } {
    if (hello.zone !== certifiedZone) {
      throw new TrellisError(CODE.ZONE_NAME_MISMATCH, `zone sync: this connection's certificate is zone "${certifiedZone}"'s, and it says it is "${hello.zone}"`, { side: 'downstream', details: { certified: certifiedZone, claimed: hello.zone } });
    }
    const now = this.now();
    let zone = this.zones.get(hello.zone);
    if (zone?.connection !== undefined) {
      throw new TrellisError(CODE.ZONE_CONFLICT, `zone sync: zone "${hello.zone}" is connected already (epoch ${zone.epoch}); a second control plane with its name is refused`, { side: 'downstream', retryable: true, details: { zone: hello.zone } });
    }
    const sameEpoch = zone?.epoch === hello.epoch;
    if (zone === undefined) {
      zone = this.newZone(hello.zone, hello.epoch);
      this.zones.set(zone.name, zone);
    }
    // A new epoch: the zone's versions start again. Its records stay until its reset replaces them.
    zone.epoch = hello.epoch;
    zone.connection = this.nextConnection++;
    zone.connects++;
    zone.lastSeen = now;
    if (!zone.online) this.bringOnline(zone);
    this.dirty.add(zone.name);
    const applied = perKind(UP_KINDS, (k) => (sameEpoch ? zone.replicas[k].version : 0));
    const down = perKind(DOWN_KINDS, (k) => (hello.globalEpoch === this.globalEpoch ? hello.down[k] : -1));
    return {
      connection: zone.connection,
      welcome: { t: 'welcome', protocol: ZONE_SYNC_PROTOCOL_VERSION, globalEpoch: this.globalEpoch, applied, resume: sameEpoch, leaseMs: this.options.leaseMs, exportDefault: this.options.exportDefault },
      down,
    };
  }

  /** Any message renews the lease; a delta chunk is applied (all chunks together) and folded into the catalogue. */
  receive(zoneName: string, connection: number, message: DeltaMessage<UpKind> | { t: 'renew' }, bytes: number): { ack?: { kind: UpKind; version: number }; changed: boolean } {
    const zone = this.connected(zoneName, connection);
    const now = this.now();
    zone.lastSeen = now;
    // A stalled stream that lapsed and then spoke again: the zone is back.
    const returned = !zone.online;
    if (returned) this.bringOnline(zone);
    if (message.t === 'renew') return { changed: returned };
    const replica = zone.replicas[message.kind];
    const applied = replica.receive(message, bytes, (key) => {
      if (ownerOf(key) !== zone.name) {
        throw new TrellisError(CODE.ZONE_SYNC_FOREIGN_RECORD, `zone sync: zone "${zone.name}" sent ${message.kind} ${key}, a record of zone "${ownerOf(key)}"; only the owning zone changes its records`, { side: 'downstream', details: { zone: zone.name, kind: message.kind, key } });
      }
    });
    if (applied === undefined) return { changed: false };
    // An empty delta (a reset of nothing) carries no change time.
    if (applied.at > 0) zone.lagMs[message.kind] = Math.max(0, now - applied.at);
    if (message.reset) zone.resets[message.kind]++;
    this.dirty.add(zone.name);
    if (zone.online) for (const change of applied.changes) this.stage(message.kind, change.key, change.record);
    return { ack: { kind: message.kind, version: applied.version }, changed: returned || (zone.online && applied.changes.length > 0) };
  }

  /** The stream ended: its chunks in flight are dropped; nothing else changes until the lease says so. */
  disconnect(zoneName: string, connection: number): void {
    const zone = this.zones.get(zoneName);
    if (zone === undefined || zone.connection !== connection) return;
    zone.connection = undefined;
    for (const kind of UP_KINDS) zone.replicas[kind].abort();
  }

  /** Zones whose lease lapsed go offline (their records leave the catalogue); returns their names. */
  expireLeases(): string[] {
    const now = this.now();
    const expired: string[] = [];
    for (const zone of this.zones.values()) {
      if (!zone.online || now - zone.lastSeen <= this.options.leaseMs) continue;
      zone.online = false;
      zone.offlineSince = now;
      zone.leaseExpiries++;
      for (const kind of UP_KINDS) for (const [key] of zone.replicas[kind].records()) this.stage(kind, key, undefined, 'zone-offline');
      this.dirty.add(zone.name);
      expired.push(zone.name);
    }
    return expired;
  }

  /**
   * What `zoneName` has not seen of `kind` since `from` (-1: nothing yet): never its own records.
   * Undefined while the kind has published versions the store does not hold yet: the persister pushes
   * again once they are written.
   */
  downDelta(zoneName: string, kind: DownKind, from: number): SetDelta<unknown> | undefined {
    const set = this.catalogue[kind];
    if (set.version !== this.durable[kind]) return undefined;
    if (kind === 'policy') return from < 0 ? set.snapshot() : set.since(from);
    const others = (key: string): boolean => ownerOf(key) !== zoneName;
    return from < 0 ? set.snapshot(others) : set.since(from, others);
  }

  /** The mesh-wide policies, by `namespace/name` (published with the next write); returns whether anything changed. */
  setPolicies(policies: ReadonlyMap<string, unknown>): boolean {
    // Compared with what will be published: the catalogue with the pending changes over it.
    const effective = new Map(this.catalogue.policy.records());
    for (const [key, change] of this.pending.policy) {
      if (change.record === undefined) effective.delete(key);
      else effective.set(key, change.record);
    }
    let changed = false;
    for (const key of effective.keys()) {
      if (policies.has(key)) continue;
      this.stage('policy', key, undefined);
      changed = true;
    }
    for (const [key, policy] of policies) {
      const before = effective.get(key);
      if (before !== undefined && JSON.stringify(before) === JSON.stringify(policy)) continue;
      this.stage('policy', key, policy);
      changed = true;
    }
    return changed;
  }

  zoneNames(): string[] {
    return [...this.zones.keys()].sort();
  }

  status(name: string): ZoneStatus | undefined {
    const zone = this.zones.get(name);
    if (zone === undefined) return undefined;
    return {
      name: zone.name,
      epoch: zone.epoch,
      state: zone.online ? 'online' : 'offline',
      connected: zone.connection !== undefined,
      lastSeen: zone.lastSeen,
      ...(zone.offlineSince === undefined ? {} : { offlineSince: zone.offlineSince }),
      versions: perKind(UP_KINDS, (k) => zone.replicas[k].version),
      records: perKind(UP_KINDS, (k) => zone.replicas[k].size),
      lagMs: { ...zone.lagMs },
      connects: zone.connects,
      leaseExpiries: zone.leaseExpiries,
      resets: { ...zone.resets },
    };
  }

  snapshot(name: string): ZoneSnapshot | undefined {
    const zone = this.zones.get(name);
    if (zone === undefined) return undefined;
    return {
      name: zone.name,
      epoch: zone.epoch,
      online: zone.online,
      lastSeen: zone.lastSeen,
      versions: perKind(UP_KINDS, (k) => zone.replicas[k].version),
      records: perKind(UP_KINDS, (k) => [...zone.replicas[k].records()]),
      catalogue: perKind(UP_KINDS, (k) => [...this.catalogue[k].all()].filter(([key]) => ownerOf(key) === zone.name)),
    };
  }

  meta(): GlobalMeta {
    return { globalEpoch: this.globalEpoch, reservedVersion: this.reserved, policies: [...this.catalogue.policy.all()] };
  }

  private connected(zoneName: string, connection: number): Zone {
    const zone = this.zones.get(zoneName);
    if (zone === undefined || zone.connection !== connection) {
      throw new TrellisError(CODE.ZONE_NOT_CONNECTED, `zone sync: zone "${zoneName}" has no stream ${connection}`, { side: 'internal' });
    }
    return zone;
  }

  private bringOnline(zone: Zone): void {
    zone.online = true;
    zone.offlineSince = undefined;
    this.dirty.add(zone.name);
    for (const kind of UP_KINDS) for (const [key, record] of zone.replicas[kind].records()) this.stage(kind, key, record);
  }

  private newZone(name: string, epoch: string): Zone {
    return {
      name, epoch, online: false, connection: undefined, lastSeen: this.now(), offlineSince: undefined, connects: 0, leaseExpiries: 0,
      replicas: perKind(UP_KINDS, (k) => new SyncReplica<unknown>(k)),
      lagMs: perKind(UP_KINDS, () => 0),
      resets: perKind(UP_KINDS, () => 0),
    };
  }

  private restoreZone(snapshot: ZoneSnapshot): void {
    const zone = this.newZone(snapshot.name, snapshot.epoch);
    zone.replicas = perKind(UP_KINDS, (k) => new SyncReplica<unknown>(k, undefined, { version: snapshot.versions[k], records: snapshot.records[k] }));
    // A zone online before the restart gets a whole lease from now to come back: a restart takes no one offline.
    zone.online = snapshot.online;
    zone.lastSeen = this.now();
    if (!zone.online) zone.offlineSince = snapshot.lastSeen;
    for (const kind of UP_KINDS) for (const [key, entry] of snapshot.catalogue[kind]) this.catalogue[kind].restore(key, entry);
    this.zones.set(zone.name, zone);
  }
}
