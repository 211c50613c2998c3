/**
 * The wire parsers and the chunker: strict about everything (unknown fields, types, kinds, protocol
 * versions, keys), chunks below the message limit, and a record too large to send named by kind and key.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { chunkDelta } from '../../../control/zone-sync/chunking.js';
import { LineReader } from '../../../control/zone-sync/frames.js';
import { parseDownMessage, parseUpMessage, type DeltaMessage } from '../../../control/zone-sync/protocol.js';
import { validateRecord } from '../../../control/zone-sync/records.js';
import { VersionedSet } from '../../../control/zone-sync/versioned-set.js';
import { CODE } from '../../../common/error-codes.js';
import { service, serviceEntry, codeOf } from './support.js';

const hello = { t: 'hello', protocol: 1, zone: 'east', epoch: 'abcdefgh', down: { service: 0, ingress: 0, trust: 0, policy: 0 } };

describe('zone sync wire format', () => {
  it('parses a hello, and refuses other protocol versions, bad zone names, unknown fields and types', () => {
    expect(parseUpMessage(JSON.stringify(hello))).toMatchObject({ zone: 'east', down: { policy: 0 } });
    expect(codeOf(() => parseUpMessage(JSON.stringify({ ...hello, protocol: 2 })))).toBe(CODE.ZONE_SYNC_PROTOCOL);
    expect(codeOf(() => parseUpMessage(JSON.stringify({ ...hello, zone: 'East_1' })))).toBe(CODE.ZONE_SYNC_MALFORMED);
    expect(codeOf(() => parseUpMessage(JSON.stringify({ ...hello, extra: 1 })))).toBe(CODE.ZONE_SYNC_MALFORMED);
    expect(codeOf(() => parseUpMessage(JSON.stringify({ ...hello, down: { service: -1 } })))).toBe(CODE.ZONE_SYNC_MALFORMED);
    expect(codeOf(() => parseUpMessage(JSON.stringify({ ...hello, down: { pods: 1 } })))).toBe(CODE.ZONE_SYNC_MALFORMED);
    expect(codeOf(() => parseUpMessage('{"t":"welcome"}'))).toBe(CODE.ZONE_SYNC_MALFORMED);
    expect(codeOf(() => parseUpMessage('not json'))).toBe(CODE.ZONE_SYNC_MALFORMED);
    expect(codeOf(() => parseUpMessage('[1]'))).toBe(CODE.ZONE_SYNC_MALFORMED);
  });

  it('refuses deltas of kinds a side does not send, bad versions, resets with removals, and bad keys', () => {
    const delta = { t: 'delta', kind: 'service', from: 0, to: 1, seq: 0, last: true, reset: false, at: 0, upserts: [], removes: [] };
    expect(parseUpMessage(JSON.stringify(delta))).toMatchObject({ kind: 'service' });
    expect(codeOf(() => parseUpMessage(JSON.stringify({ ...delta, kind: 'policy' })))).toBe(CODE.ZONE_SYNC_MALFORMED);
    expect(parseDownMessage(JSON.stringify({ ...delta, kind: 'policy' }))).toMatchObject({ kind: 'policy' });
    expect(codeOf(() => parseUpMessage(JSON.stringify({ ...delta, from: 2, to: 1 })))).toBe(CODE.ZONE_SYNC_MALFORMED);
    expect(codeOf(() => parseUpMessage(JSON.stringify({ ...delta, from: 1.5 })))).toBe(CODE.ZONE_SYNC_MALFORMED);
    expect(codeOf(() => parseUpMessage(JSON.stringify({ ...delta, reset: true, from: 1, to: 2 })))).toBe(CODE.ZONE_SYNC_MALFORMED);
    expect(codeOf(() => parseUpMessage(JSON.stringify({ ...delta, reset: true, removes: ['east/a/b'] })))).toBe(CODE.ZONE_SYNC_MALFORMED);
    for (const key of ['', '../x', 'East/a', 'a//b', 'a/b/', 'x'.repeat(600), 5]) {
      expect(codeOf(() => parseUpMessage(JSON.stringify({ ...delta, removes: [key] })))).toBe(CODE.ZONE_SYNC_MALFORMED);
    }
    // Down removals must say why, with a reason from the list.
    expect(codeOf(() => parseDownMessage(JSON.stringify({ ...delta, removes: ['east/a/b'] })))).toBe(CODE.ZONE_SYNC_MALFORMED);
    expect(codeOf(() => parseDownMessage(JSON.stringify({ ...delta, removes: [{ key: 'east/a/b', reason: 'gone' }] })))).toBe(CODE.ZONE_SYNC_MALFORMED);
    expect(parseDownMessage(JSON.stringify({ ...delta, removes: [{ key: 'east/a/b', reason: 'zone-offline' }] }))).toMatchObject({ removes: [{ reason: 'zone-offline' }] });
  });

  it('validates records by kind and names the kind and key of a bad one', () => {
    const [key, record] = serviceEntry(service('west', 'orders'));
    expect(validateRecord('service', key, record)).toEqual(record);
    const bad = [
      { ...record, zone: 'east' },
      { ...record, identities: ['https://x'] },
      { ...record, localities: [{ locality: 'a', healthy: 2, total: 1 }] },
      { ...record, ports: [{ port: 0, protocol: 'tcp' }] },
      { ...record, pods: [] },
    ];
    for (const r of bad) {
      try {
        validateRecord('service', key, r);
        expect.unreachable();
      } catch (err) {
        expect((err as { code: string; details: unknown }).code).toBe(CODE.ZONE_SYNC_MALFORMED);
        expect((err as { details: unknown }).details).toEqual({ kind: 'service', key });
      }
    }
    expect(codeOf(() => validateRecord('ingress', 'west/main', { zone: 'west', addresses: ['10.0.0.1:99999'] }))).toBe(CODE.ZONE_SYNC_MALFORMED);
    expect(validateRecord('ingress', 'west/main', { zone: 'west', addresses: ['10.0.0.1:15443', '[::1]:15443'] })).toBeDefined();
  });

  it('chunks a delta under the message limit, every record whole, and names a record that cannot fit', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 2_000, max: 40_000 }), (n, limit) => {
      const set = new VersionedSet<unknown>(() => 0);
      for (let i = 0; i < n; i++) set.set(...serviceEntry(service('west', `svc-${i}`)));
      for (let i = 0; i < n; i += 7) set.remove(`west/shop/svc-${i}`);
      const lines = chunkDelta('service', set.since(0), false, { maxMessageBytes: limit, maxRecordBytes: 1_000 });
      const parsed = lines.map((l) => parseUpMessage(l.trimEnd()) as DeltaMessage);
      for (const line of lines) expect(Buffer.byteLength(line)).toBeLessThanOrEqual(limit);
      expect(parsed.map((m) => m.seq)).toEqual(parsed.map((_, i) => i));
      expect(parsed.filter((m) => m.last)).toHaveLength(1);
      expect(parsed.flatMap((m) => m.upserts).length + parsed.flatMap((m) => m.removes).length).toBe(n);
    }), { numRuns: 40 });
    const set = new VersionedSet<unknown>();
    set.set('west/shop/huge', { ...service('west', 'huge'), identities: Array.from({ length: 64 }, (_, i) => `spiffe://mesh.test/ns/shop/sa/${'x'.repeat(200)}${i}`) });
    try {
      chunkDelta('service', set.since(0), false, { maxMessageBytes: 1_000_000, maxRecordBytes: 10_000 });
      expect.unreachable();
    } catch (err) {
      expect((err as { code: string }).code).toBe(CODE.ZONE_SYNC_TOO_LARGE);
      expect((err as Error).message).toContain('service record west/shop/huge');
    }
  });

  it('reads lines across chunk boundaries and refuses a line over the limit before holding it whole', () => {
    fc.assert(fc.property(fc.array(fc.string({ maxLength: 50 }).map((s) => s.replace(/\n/g, '')), { maxLength: 20 }), fc.array(fc.integer({ min: 1, max: 30 }), { minLength: 1 }), (lines, cuts) => {
      const bytes = Buffer.from(lines.map((l) => `${l}\n`).join(''));
      const reader = new LineReader(1_000);
      const out: string[] = [];
      let at = 0;
      for (let i = 0; at < bytes.length; i++) {
        const next = Math.min(bytes.length, at + (cuts[i % cuts.length] as number));
        out.push(...reader.push(bytes.subarray(at, next)));
        at = next;
      }
      expect(out).toEqual(lines);
    }));
    const reader = new LineReader(100);
    reader.push(Buffer.alloc(60, 0x61));
    expect(codeOf(() => reader.push(Buffer.alloc(60, 0x61)))).toBe(CODE.ZONE_SYNC_TOO_LARGE);
  });
});
