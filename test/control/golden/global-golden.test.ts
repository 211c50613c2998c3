/**
 * Zones' golden-metrics reports at a real global control plane, in process, over TLS 1.3 on loopback:
 * `POST /v1/zone/golden` with each zone's certificate, the refusals at that boundary (no zone certificate,
 * a zone naming another, an oversized body), and the merged graph and the UI on the global's admin port.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CODE } from '../../../common/error-codes.js';
import { openSession, postJson, type GlobalEndpoint, type ZoneCredentials } from '../../../control/zone-sync/global-client.js';
import { ZONE_SYNC_PATHS } from '../../../control/zone-sync/protocol.js';
import { ZONE_GOLDEN_WINDOW_MS } from '../../../control/zone-sync/golden-upload.js';
import { startTestGlobal, type TestGlobal } from '../global-fixture.js';
import { latency } from './fixtures.js';

let fixture: TestGlobal;
let endpoint: GlobalEndpoint;

beforeAll(async () => {
  fixture = await startTestGlobal('trellis-global-golden-');
  endpoint = fixture.endpoint;
});

afterAll(() => fixture.close());

const joinZone = (zone: string): Promise<ZoneCredentials> => fixture.joinZone(zone);

async function post(credentials: ZoneCredentials | undefined, body: unknown): Promise<string> {
  const session = await openSession(endpoint, credentials);
  try {
    await postJson(session, ZONE_SYNC_PATHS.golden, body);
    return 'accepted';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  } finally {
    session.destroy();
  }
}

function report(zone: string, seenBy: 'inbound' | 'outbound', requests: number, denied = 0): unknown {
  return { zone, windowMs: ZONE_GOLDEN_WINDOW_MS, truncated: 0, edges: [{ source: 'shop/frontend', destination: 'shop/orders', protocol: 'http', seenBy, requests, failures: 0, denied, latency: latency(3, requests) }] };
}

async function admin<T>(path: string): Promise<T> {
  const res = await fetch(`http://127.0.0.1:${fixture.global.adminAddress.port}${path}`);
  expect(res.status).toBe(200);
  return (await res.json()) as T;
}

describe('zones\' golden metrics at the global', () => {
  it('takes each zone\'s report over mutual TLS, refuses the rest at the boundary, and serves the merged graph', async () => {
    const [west, east] = await Promise.all([joinZone('west'), joinZone('east')]);
    expect(await post(undefined, report('west', 'outbound', 310))).toBe(CODE.CONTROL_CLIENT_CERT_REQUIRED);
    expect(await post(east, report('west', 'outbound', 1))).toBe(CODE.ZONE_SYNC_FOREIGN_RECORD);
    expect(await post(west, { ...(report('west', 'outbound', 1) as object), pad: 'x'.repeat(300 * 1024) })).toBe(CODE.CONTROL_BODY_TOO_LARGE);
    expect(await post(west, report('west', 'outbound', 310))).toBe('accepted');
    expect(await post(east, report('east', 'inbound', 300, 4))).toBe('accepted');
    const { edges } = await admin<{ edges: { source: string; destination: string; requests: number; denied: number; seenBy: string; zones: string[] }[] }>('/ui/api/edges');
    expect(edges).toEqual([expect.objectContaining({ source: 'shop/frontend', destination: 'shop/orders', requests: 300, denied: 4, seenBy: 'inbound', zones: ['east', 'west'] })]);
    expect(await post(west, report('west', 'outbound', 320))).toBe(CODE.ZONE_GOLDEN_TOO_FREQUENT);
  });

  it('answers an oversized anonymous bootstrap with 413 and stays up (it used to throw outside any handler)', async () => {
    const session = await openSession(endpoint);
    try {
      const code = await postJson(session, ZONE_SYNC_PATHS.bootstrap, { zone: 'west', csrPem: 'x'.repeat(200 * 1024) }, 'tzt1.forged').then(() => 'accepted', (err: { code?: string }) => err.code);
      expect(code).toBe(CODE.CONTROL_BODY_TOO_LARGE);
    } finally {
      session.destroy();
    }
    expect((await admin<{ ready: boolean }>('/ready')).ready).toBe(true);
  });

  it('serves the UI and its overview on the global\'s admin port', async () => {
    const overview = await admin<{ mode: string; leaseMs: number; zones: unknown[] }>('/ui/api/overview');
    expect(overview).toMatchObject({ mode: 'global', leaseMs: 30_000 });
    expect(Array.isArray(overview.zones)).toBe(true);
    const page = await fetch(`http://127.0.0.1:${fixture.global.adminAddress.port}/ui/`);
    // From the sources (no dist/ui here) the page says how to build it; built, it is the page with its CSP.
    expect([200, 503]).toContain(page.status);
    if (page.status === 200) expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
  });
});
