/**
 * The sender's versioned set and the receiver's replica together: whatever the sender does, and however
 * often the stream breaks mid-delta, a receiver that resumes from its version converges to exactly the
 * sender's records. Out-of-order, repeated, foreign and oversized chunks are refused and change nothing.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SyncReplica } from '../../../control/zone-sync/replica.js';
import { VersionedSet } from '../../../control/zone-sync/versioned-set.js';
import { CODE } from '../../../common/error-codes.js';
import { service, serviceEntry, upLines, codeOf } from './support.js';

const op = fc.oneof(
  fc.record({ type: fc.constant('set' as const), name: fc.integer({ min: 0, max: 15 }), healthy: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ type: fc.constant('remove' as const), name: fc.integer({ min: 0, max: 15 }) }),
  fc.record({ type: fc.constant('sync' as const), cutAfter: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }) }),
);

function liveRecords(set: VersionedSet<unknown>): Record<string, unknown> {
  return Object.fromEntries([...set.records()].sort(([a], [b]) => a.localeCompare(b)));
}

function heldRecords(replica: SyncReplica<unknown>): Record<string, unknown> {
  return Object.fromEntries([...replica.records()].sort(([a], [b]) => a.localeCompare(b)));
}

describe('VersionedSet → SyncReplica', () => {
  it('converges under any sequence of changes, small chunks and streams cut mid-delta', () => {
    fc.assert(fc.property(fc.array(op, { maxLength: 60 }), fc.integer({ min: 0, max: 4 }), (ops, maxTombstones) => {
      const set = new VersionedSet<unknown>(() => 1, maxTombstones);
      const replica = new SyncReplica<unknown>('service');
      const sync = (cutAfter?: number): void => {
        const lines = upLines('service', set.since(replica.version), 1_200);
        for (const [i, { message, bytes }] of lines.entries()) {
          if (cutAfter !== undefined && i >= cutAfter && i < lines.length - 1) {
            // The stream broke: what was in flight is forgotten, what was applied stays.
            const before = heldRecords(replica);
            replica.abort();
            expect(heldRecords(replica)).toEqual(before);
            return;
          }
          replica.receive(message, bytes);
        }
      };
      for (const o of ops) {
        if (o.type === 'set') set.set(...serviceEntry(service('west', `s${o.name}`, Math.min(o.healthy, 2), 2)));
        else if (o.type === 'remove') set.remove(`west/shop/s${o.name}`);
        else sync(o.cutAfter);
      }
      sync();
      expect(replica.version).toBe(set.version);
      expect(heldRecords(replica)).toEqual(liveRecords(set));
    }), { numRuns: 200 });
  });

  it('refuses chunks out of order and keeps what it held', () => {
    const set = new VersionedSet<unknown>();
    const replica = new SyncReplica<unknown>('service');
    set.set(...serviceEntry(service('west', 'a')));
    for (const { message, bytes } of upLines('service', set.since(0))) replica.receive(message, bytes);
    const held = heldRecords(replica);
    for (let i = 0; i < 40; i++) set.set(...serviceEntry(service('west', `b${i}`)));
    const lines = upLines('service', set.since(replica.version), 2_000);
    expect(lines.length).toBeGreaterThan(2);
    // A second chunk first; the first twice; a delta that does not follow the held version; a replay.
    expect(codeOf(() => replica.receive(lines[1]!.message, 1))).toBe(CODE.ZONE_SYNC_OUT_OF_ORDER);
    replica.receive(lines[0]!.message, 1);
    expect(codeOf(() => replica.receive(lines[0]!.message, 1))).toBe(CODE.ZONE_SYNC_OUT_OF_ORDER);
    expect(codeOf(() => replica.receive({ ...lines[0]!.message, from: 99, to: 120 }, 1))).toBe(CODE.ZONE_SYNC_OUT_OF_ORDER);
    expect(heldRecords(replica)).toEqual(held);
    expect(replica.version).toBe(1);
    // Nothing half-applied: a malformed record in the last chunk refuses the whole delta.
    const last = lines[lines.length - 1]!.message;
    const poisoned = { ...last, upserts: [...last.upserts, { key: 'west/shop/bad', record: { zone: 'west', namespace: 'shop', name: 'bad', ports: 'all' } }] };
    for (const { message } of lines.slice(0, -1)) replica.receive(message, 1);
    expect(codeOf(() => replica.receive(poisoned, 1))).toBe(CODE.ZONE_SYNC_MALFORMED);
    expect(heldRecords(replica)).toEqual(held);
    // The guard refuses a key and the delta with it.
    expect(codeOf(() => replica.receive(lines[0]!.message, 1, () => {
      throw Object.assign(new Error('foreign'), { code: CODE.ZONE_SYNC_FOREIGN_RECORD });
    }))).toBe(CODE.ZONE_SYNC_FOREIGN_RECORD);
    for (const { message, bytes } of lines) replica.receive(message, bytes);
    expect(heldRecords(replica)).toEqual(liveRecords(set));
  });

  it('refuses a delta over its byte budget or one that would hold too many records, keeping its state', () => {
    const set = new VersionedSet<unknown>();
    for (let i = 0; i < 10; i++) set.set(...serviceEntry(service('west', `s${i}`)));
    const small = new SyncReplica<unknown>('service', { maxDeltaBytes: 500, maxRecords: 100 });
    expect(() => upLines('service', set.since(0), 400).forEach(({ message, bytes }) => small.receive(message, bytes))).toThrow(/over 500 bytes/);
    const few = new SyncReplica<unknown>('service', { maxDeltaBytes: 1e9, maxRecords: 5 });
    expect(() => upLines('service', set.since(0)).forEach(({ message, bytes }) => few.receive(message, bytes))).toThrow(/10 service records would be held/);
    expect(few.size).toBe(0);
    expect(few.version).toBe(0);
  });

  it('answers a receiver older than its floor, or ahead of it, with a reset', () => {
    const set = new VersionedSet<unknown>(Date.now, 1);
    set.set('west/shop/a', service('west', 'a'));
    set.set('west/shop/b', service('west', 'b'));
    set.remove('west/shop/a');
    set.remove('west/shop/b');
    expect(set.floor).toBe(3);
    expect(set.since(1).reset).toBe(true);
    expect(set.since(3).reset).toBe(false);
    expect(set.since(99).reset).toBe(true);
  });
});
