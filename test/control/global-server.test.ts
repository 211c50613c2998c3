/**
 * The global control plane's boundary, over real TLS on loopback, in process: zone tokens (wrong zone,
 * spent, revoked, forged), certificates that are not a zone's, and sync streams that send garbage, an
 * oversized line, a delta out of order or another zone's record. Each gets its typed error and the end of
 * its stream; what the zone had synced before is still there when it reconnects.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientHttp2Session } from 'node:http2';
import { CODE } from '../../common/error-codes.js';
import type { ZoneTokenService } from '../../control/global/zone-tokens.js';
import { obtainZoneCredentials, openSession, type GlobalEndpoint, type ZoneCredentials } from '../../control/zone-sync/global-client.js';
import { LineReader } from '../../control/zone-sync/frames.js';
import { ZONE_SYNC_PATHS } from '../../control/zone-sync/protocol.js';
import { createRootCa } from '../../ca/authority.js';
import { createCsr, generateWorkloadKey } from '../../ca/csr.js';
import { zoneIdentity } from '../../control/global/zone-identity.js';
import { startTestGlobal, type TestGlobal } from './global-fixture.js';

let fixture: TestGlobal;
let tokens: ZoneTokenService;
let endpoint: GlobalEndpoint;

beforeAll(async () => {
  fixture = await startTestGlobal();
  ({ tokens, endpoint } = fixture);
});

afterAll(() => fixture.close());

const temp = (prefix: string): string => fixture.temp(prefix);
const join_ = (zone: string): Promise<ZoneCredentials> => fixture.joinZone(zone);

/** A sync stream: send lines, collect what comes back until the global ends it (or `untilLines`). */
async function sync(credentials: ZoneCredentials, lines: readonly string[], until: (m: { t: string }) => boolean = () => false): Promise<unknown[]> {
  const session: ClientHttp2Session = await openSession(endpoint, credentials);
  try {
    const stream = session.request({ ':method': 'POST', ':path': ZONE_SYNC_PATHS.sync });
    const received: unknown[] = [];
    const reader = new LineReader(2 * 1024 * 1024);
    const done = new Promise<void>((resolve) => {
      stream.on('data', (chunk: Buffer) => {
        for (const line of reader.push(chunk)) {
          received.push(JSON.parse(line) as unknown);
          if (until(received[received.length - 1] as { t: string })) resolve();
        }
      });
      stream.on('end', resolve);
      stream.on('close', resolve);
      stream.on('error', () => resolve());
    });
    for (const line of lines) stream.write(line.endsWith('\n') ? line : `${line}\n`);
    await done;
    return received;
  } finally {
    session.destroy();
  }
}

const hello = (zone: string, epoch = `epoch-${zone}-1`): string => JSON.stringify({ t: 'hello', protocol: 1, zone, epoch, down: {} });
const record = (zone: string, name: string, healthy = 1) => ({ key: `${zone}/shop/${name}`, record: { zone, namespace: 'shop', name, ports: [{ port: 80, protocol: 'http' }], identities: [`spiffe://mesh.test/ns/shop/sa/${name}`], localities: [{ locality: zone, healthy, total: 1 }] } });
const delta = (from: number, to: number, upserts: unknown[], removes: unknown[] = []): string => JSON.stringify({ t: 'delta', kind: 'service', from, to, seq: 0, last: true, reset: false, at: Date.now(), upserts, removes });
const errorOf = (messages: unknown[]): { code: string; message: string } | undefined => messages.find((m) => (m as { t: string }).t === 'error') as { code: string; message: string } | undefined;

describe('the global control plane\'s boundary', () => {
  it('joins a zone with its token once; refuses it spent, for another zone, revoked or forged', async () => {
    const { token, record: rec } = await tokens.create('west', 60_000);
    await expect(obtainZoneCredentials(endpoint, temp('z-'), 'east', { token })).rejects.toMatchObject({ code: CODE.ZONE_NAME_MISMATCH });
    await obtainZoneCredentials(endpoint, temp('z-'), 'west', { token });
    await expect(obtainZoneCredentials(endpoint, temp('z-'), 'west', { token })).rejects.toMatchObject({ code: CODE.ZONE_TOKEN_INVALID });
    const second = await tokens.create('north', 60_000);
    await tokens.revoke(second.record.id);
    await expect(obtainZoneCredentials(endpoint, temp('z-'), 'north', { token: second.token })).rejects.toMatchObject({ code: CODE.ZONE_TOKEN_INVALID });
    const forged = `${token.slice(0, -4)}AAAA`;
    await expect(obtainZoneCredentials(endpoint, temp('z-'), 'west', { token: forged })).rejects.toMatchObject({ code: CODE.ZONE_TOKEN_INVALID });
    expect(rec.zone).toBe('west');
  });

  it('refuses a sync stream without a zone certificate of this mesh', async () => {
    const other = await createRootCa({ trustDomain: 'mesh.test' });
    const key = await generateWorkloadKey();
    const id = zoneIdentity('mesh.test', 'trellis-system', 'west');
    const signed = await other.signCsr(await createCsr(key, id), id);
    const foreign = { keyPem: key.keyPem, certChainPem: signed.certChainPem, notAfter: signed.notAfter };
    const answer = await new Promise<number>((resolve) => {
      void openSession(endpoint, foreign).then((session) => {
        const stream = session.request({ ':method': 'POST', ':path': ZONE_SYNC_PATHS.sync });
        stream.on('response', (h) => resolve(Number(h[':status'])));
        stream.on('error', () => resolve(0));
        stream.end();
      }, () => resolve(-1));
    });
    expect(answer).toBe(403);
  });

  it('ends a stream that sends garbage, an oversized line, a delta out of order or another zone\'s record, keeping what was synced', async () => {
    const creds = await join_('south');
    const first = await sync(creds, [hello('south'), delta(0, 1, [record('south', 'orders')])], (m) => m.t === 'ack');
    expect(first[0]).toMatchObject({ t: 'welcome', resume: false });
    expect(first[first.length - 1]).toEqual({ t: 'ack', kind: 'service', version: 1 });
    const cases: [string[], string][] = [
      [['not json'], CODE.ZONE_SYNC_MALFORMED],
      [[delta(0, 1, [])], CODE.ZONE_SYNC_MALFORMED], // no hello first
      [[hello('south'), delta(5, 6, [record('south', 'x')])], CODE.ZONE_SYNC_OUT_OF_ORDER],
      [[hello('south'), delta(1, 2, [record('west', 'orders')])], CODE.ZONE_SYNC_FOREIGN_RECORD],
      [[hello('south'), delta(1, 2, [], ['west/shop/orders'])], CODE.ZONE_SYNC_FOREIGN_RECORD],
      [[hello('south'), 'x'.repeat(1024 * 1024 + 10)], CODE.ZONE_SYNC_TOO_LARGE],
      [[hello('west')], CODE.ZONE_NAME_MISMATCH],
      [[JSON.stringify({ t: 'hello', protocol: 9, zone: 'south', epoch: 'epoch-south-1', down: {} })], CODE.ZONE_SYNC_PROTOCOL],
    ];
    for (const [lines, code] of cases) {
      const messages = await sync(creds, lines);
      expect(errorOf(messages)?.code, lines.join(' ').slice(0, 80)).toBe(code);
    }
    // Everything synced before is still there, and the zone resumes from it.
    const again = await sync(creds, [hello('south')], (m) => m.t === 'welcome');
    expect(again[0]).toMatchObject({ t: 'welcome', resume: true, applied: { service: 1 } });
    expect(fixture.global.state.catalogue.service.get('south/shop/orders')).toMatchObject({ name: 'orders' });
  });

  it('refuses a second stream for a zone that is connected', async () => {
    const creds = await join_('twin');
    const session = await openSession(endpoint, creds);
    const stream = session.request({ ':method': 'POST', ':path': ZONE_SYNC_PATHS.sync });
    stream.write(`${hello('twin')}\n`);
    await new Promise((r) => stream.once('data', r));
    const second = await sync(creds, [hello('twin', 'epoch-twin-2')]);
    expect(errorOf(second)?.code).toBe(CODE.ZONE_CONFLICT);
    session.destroy();
  });
});
