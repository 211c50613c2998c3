/**
 * A zone's golden-metrics report at the global, as untrusted input: the refusals (shape, bounds, speaking
 * for another zone, too often), the derived numbers recomputed, a refused report leaving the last one in
 * place, and the merge across zones (a call between zones counted once, denials added, stale reports out).
 */
import { describe, expect, it } from 'vitest';
import { CODE } from '../../../common/error-codes.js';
import { GoldenWindow, WINDOW_SLOT_MS } from '../../../control/golden/golden-window.js';
import { ZoneGoldenBoard, parseZoneGolden } from '../../../control/global/zone-golden.js';
import { ZONE_GOLDEN_LIMITS } from '../../../control/zone-sync/golden-limits.js';
import { ZONE_GOLDEN_WINDOW_MS, zoneGoldenBody } from '../../../control/zone-sync/golden-upload.js';
import { SELF, latency, summary } from './fixtures.js';

type Edge = Record<string, unknown>;

function edge(extra: Edge = {}): Edge {
  return { source: 'shop/frontend', destination: 'shop/orders', protocol: 'http', seenBy: 'inbound', requests: 300, failures: 3, denied: 0, latency: latency(4, 300), ...extra };
}

function report(zone: string, edges: Edge[], extra: Edge = {}): Record<string, unknown> {
  return { zone, windowMs: ZONE_GOLDEN_WINDOW_MS, truncated: 0, edges, ...extra };
}

function refusal(body: Record<string, unknown>, zone = 'west'): string {
  try {
    parseZoneGolden(zone, body);
  } catch (err) {
    return (err as { code: string }).code;
  }
  return 'accepted';
}

describe('parseZoneGolden', () => {
  it('accepts a zone\'s edge view and recomputes what is derived from the counts', () => {
    const parsed = parseZoneGolden('west', report('west', [edge({ ratePerSecond: 1e9, successRate: 1, p50Ms: 0, p99Ms: 0 })]));
    const [e] = parsed.edges;
    expect(e?.ratePerSecond).toBe(1); // 300 requests in 5 minutes, whatever the zone said
    expect(e?.successRate).toBeCloseTo(0.99);
    expect(e?.p50Ms).toBeGreaterThan(5);
  });

  it('refuses a report speaking for another zone', () => {
    expect(refusal(report('east', [edge()]))).toBe(CODE.ZONE_SYNC_FOREIGN_RECORD);
    expect(refusal({ ...report('west', []), zone: undefined })).toBe(CODE.ZONE_SYNC_FOREIGN_RECORD);
  });

  it.each([
    ['an unknown field', report('west', [], { extra: 1 })],
    ['an unknown edge field', report('west', [edge({ zone: 'east' })])],
    ['more failures than requests', report('west', [edge({ failures: 301 })])],
    ['a fractional count', report('west', [edge({ requests: 1.5 })])],
    ['a negative denial count', report('west', [edge({ denied: -1 })])],
    ['a count past the bound', report('west', [edge({ requests: ZONE_GOLDEN_LIMITS.maxCount + 1 })])],
    ['latency counting more than the requests', report('west', [edge({ latency: latency(4, 301) })])],
    ['latency on a TCP edge', report('west', [edge({ protocol: 'tcp' })])],
    ['a latency list of the wrong length', report('west', [edge({ latency: [1] })])],
    ['a label with a space', report('west', [edge({ source: 'shop/a b' })])],
    ['a label without a namespace', report('west', [edge({ destination: 'orders' })])],
    ['an unknown direction', report('west', [edge({ seenBy: 'sideways' })])],
    ['the same pair twice', report('west', [edge(), edge()])],
    ['a window past the 15 minutes kept', report('west', [], { windowMs: 16 * WINDOW_SLOT_MS })],
    ['edges that are no list', report('west', [], { edges: {} })],
    ['a prototype key', JSON.parse(`{"__proto__": {"x": 1}, ${JSON.stringify(report('west', [])).slice(1)}`) as Record<string, unknown>],
  ])('refuses %s with TRELLIS_ZONE_SYNC_MALFORMED', (_what, body) => {
    expect(refusal(body)).toBe(CODE.ZONE_SYNC_MALFORMED);
  });

  it('refuses more edges than the bound by name', () => {
    const many = Array.from({ length: ZONE_GOLDEN_LIMITS.maxEdges + 1 }, (_, i) => edge({ source: `shop/a${i}` }));
    expect(refusal(report('west', many))).toBe(CODE.ZONE_SYNC_TOO_LARGE);
  });
});

describe('ZoneGoldenBoard', () => {
  it('keeps each zone\'s report under its certified name; a refused one leaves the last in place', () => {
    let now = 1_000_000;
    const board = new ZoneGoldenBoard(() => now);
    board.accept('west', report('west', [edge()]));
    now += ZONE_GOLDEN_LIMITS.minIntervalMs;
    expect(() => board.accept('west', report('west', [edge({ failures: 999 })]))).toThrow(/golden/);
    // East cannot overwrite west's report by naming it.
    expect(() => board.accept('east', report('west', [edge({ requests: 1, failures: 0, latency: latency(4, 1) })]))).toThrow(/sent a report for "west"/);
    expect(board.zones().map((z) => [z.zone, z.edges])).toEqual([['west', 1]]);
    expect(board.edges().edges[0]?.requests).toBe(300);
  });

  it('refuses a zone reporting more often than every 5 s', () => {
    let now = 1_000_000;
    const board = new ZoneGoldenBoard(() => now);
    board.accept('west', report('west', []));
    now += ZONE_GOLDEN_LIMITS.minIntervalMs - 1;
    expect(() => board.accept('west', report('west', []))).toThrow(expect.objectContaining({ code: CODE.ZONE_GOLDEN_TOO_FREQUENT }));
    now += 1;
    expect(() => board.accept('west', report('west', []))).not.toThrow();
  });

  it('counts a call between zones once (the callee\'s view), adds denials, and leaves stale reports out', () => {
    let now = 1_000_000;
    const board = new ZoneGoldenBoard(() => now);
    // west's frontend calls east's orders: west saw 310 going out, east 300 coming in and denied 4.
    board.accept('west', report('west', [edge({ seenBy: 'outbound', requests: 310, failures: 13, latency: latency(4, 310) }), edge({ source: 'shop/frontend', destination: 'shop/cart' })]));
    board.accept('east', report('east', [edge({ denied: 4 })]));
    const merged = board.edges().edges;
    const orders = merged.find((e) => e.destination === 'shop/orders');
    expect(orders).toMatchObject({ requests: 300, failures: 3, denied: 4, seenBy: 'inbound', zones: ['east', 'west'] });
    expect(merged.find((e) => e.destination === 'shop/cart')).toMatchObject({ requests: 300, zones: ['west'] });
    // A zone gone quiet past the age limit leaves the merged graph, and its row says so.
    now += ZONE_GOLDEN_LIMITS.maxAgeMs - 1;
    board.accept('east', report('east', [edge({ denied: 4 })]));
    now += 2;
    expect(board.edges().edges.map((e) => e.destination)).toEqual(['shop/orders']);
    expect(board.edges().edges[0]).toMatchObject({ zones: ['east'], requests: 300 });
    expect(board.zones().find((z) => z.zone === 'west')?.current).toBe(false);
  });
});

describe('zoneGoldenBody', () => {
  it('is what the global accepts, from a real window, bounded to the busiest pairs', () => {
    const w = new GoldenWindow('west');
    const edges = Array.from({ length: ZONE_GOLDEN_LIMITS.maxEdges + 3 }, (_, i) => ({ direction: 'inbound' as const, source: `shop/c${i}`, destination: SELF, protocol: 'http' as const, requests: i + 1, failures: 0, latency: latency(2, i + 1) }));
    for (let i = 0; i < edges.length; i += 60) w.add(summary({ instanceId: `i-${i}`, edges: edges.slice(i, i + 60), denials: [] }), { namespace: 'shop', service: 'orders' });
    const body = zoneGoldenBody('west', w);
    expect(body.edges).toHaveLength(ZONE_GOLDEN_LIMITS.maxEdges);
    expect(body.truncated).toBe(3);
    expect(Buffer.byteLength(JSON.stringify(body))).toBeLessThan(ZONE_GOLDEN_LIMITS.maxBodyBytes);
    const parsed = parseZoneGolden('west', JSON.parse(JSON.stringify(body)) as Record<string, unknown>);
    expect(parsed.edges.some((e) => e.source === 'shop/c0')).toBe(false); // the quietest were left out
    expect(parsed.edges.find((e) => e.source === `shop/c${edges.length - 1}`)?.requests).toBe(edges.length);
  });
});
