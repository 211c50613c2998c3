/**
 * A zone whose global is unreachable: it serves the catalogue it kept in its data dir (a restart while
 * the global is down loses nothing), says since when it is stale, and, with a maximum staleness, withdraws
 * the other zones' records once that has passed; without one it keeps them however old they get. A damaged
 * kept catalogue is set aside, not trusted.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ServiceRegistry } from '../../../control/registry.js';
import { ZoneLink } from '../../../control/zone-sync/zone-link.js';
import { NO_EXPORT_RULES, ZoneExports } from '../../../control/zone-sync/exports.js';
import { CODE } from '../../../common/error-codes.js';
import { service, serviceEntry } from './support.js';

const links: ZoneLink[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const link of links.splice(0)) await link.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function zoneDir(catalogue: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-zone-link-'));
  dirs.push(dir);
  mkdirSync(join(dir, 'global'));
  writeFileSync(join(dir, 'global', 'catalogue.json'), catalogue);
  return dir;
}

async function start(dataDir: string, maxStalenessMs: number | undefined): Promise<ZoneLink> {
  const registry = new ServiceRegistry({ zone: 'east', disconnectGraceMs: 1_000, startupGraceMs: 1_000, leaseMs: 10_000 });
  const link = new ZoneLink({
    // Nothing listens on port 9: every attempt fails, as with a global that is down.
    endpoints: [{ url: new URL('https://127.0.0.1:9'), trustDomain: 'mesh.test', rootNamespace: 'trellis-system', bundlePem: '' }],
    zone: 'east', dataDir, token: 'tzt1.x.y', maxStalenessMs, exports: new ZoneExports(registry, NO_EXPORT_RULES, 'none', 'trellis-system'), ingressAddresses: [],
    registry, trustBundlePem: () => '', log: pino({ level: 'silent' }), onPoliciesChanged: () => undefined,
    backoff: { initialMs: 50, maxMs: 100 },
  });
  links.push(link);
  await link.start();
  return link;
}

const kept = JSON.stringify({ globalEpoch: 'epoch-global-1', exportDefault: 'all', confirmedAt: Date.now() + 60_000, kinds: { service: { version: 7, records: [serviceEntry(service('west', 'orders'))] } } });

describe('ZoneLink while the global is unreachable', () => {
  it('serves the kept catalogue, says it is stale, and withdraws it past the maximum staleness', async () => {
    const link = await start(zoneDir(kept), 300);
    expect(link.records('service').map(([key]) => key)).toEqual(['west/shop/orders']);
    expect(link.status()).toMatchObject({ connected: false, expired: false, catalogue: { service: { version: 7, records: 1 } } });
    expect(link.status().staleSince).toBeDefined();
    await new Promise((r) => setTimeout(r, 400));
    expect(link.status().expired).toBe(true);
    expect(link.records('service')).toEqual([]);
    expect(link.status().lastError).toMatch(/127\.0\.0\.1:9/);
  });

  it('counts staleness from the last confirmation kept in the data dir, across a restart', async () => {
    const old = JSON.stringify({ ...JSON.parse(kept) as object, confirmedAt: Date.now() - 3_600_000 });
    const link = await start(zoneDir(old), 60_000);
    expect(link.status().staleMs).toBeGreaterThanOrEqual(3_600_000);
    expect(link.status().expired).toBe(true);
    expect(link.records('service')).toEqual([]);
  });

  it('keeps the catalogue however old without a maximum staleness', async () => {
    const link = await start(zoneDir(kept), undefined);
    await new Promise((r) => setTimeout(r, 400));
    expect(link.status().expired).toBe(false);
    expect(link.records('service')).toHaveLength(1);
  });

  it('sets a damaged kept catalogue aside and starts empty', async () => {
    const bad = JSON.stringify({ kinds: { service: { version: 3, records: [['west/shop/x', { zone: 'west', pods: [] }]] } } });
    const dir = zoneDir(bad);
    const link = await start(dir, undefined);
    expect(link.records('service')).toEqual([]);
    expect(existsSync(join(dir, 'global', 'catalogue.json'))).toBe(false);
    expect(readdirSync(join(dir, 'global')).some((n) => n.startsWith('catalogue.json.damaged-'))).toBe(true);
  });
});

describe('ZoneLink and instances that disagree on export', () => {
  it('warns once when the disagreement starts, and again only after it ended and came back', async () => {
    const lines: { code?: string; service?: string }[] = [];
    const registry = new ServiceRegistry({ zone: 'east', disconnectGraceMs: 1_000, startupGraceMs: 1_000, leaseMs: 10_000 });
    const link = new ZoneLink({
      endpoints: [{ url: new URL('https://127.0.0.1:9'), trustDomain: 'mesh.test', rootNamespace: 'trellis-system', bundlePem: '' }],
      zone: 'east', dataDir: zoneDir(kept), token: 'tzt1.x.y', maxStalenessMs: undefined, exports: new ZoneExports(registry, NO_EXPORT_RULES, 'none', 'trellis-system'), ingressAddresses: [],
      registry, trustBundlePem: () => '', log: pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line) as { code?: string }) }), onPoliciesChanged: () => undefined,
      backoff: { initialMs: 50, maxMs: 100 },
    });
    links.push(link);
    await link.start();
    const instance = (id: string, address: string, exported: boolean) => ({
      instanceId: id, service: 'orders', namespace: 'shop', zone: 'east', address, tunnelPort: 15008, ports: [], upstreams: [], healthy: true, updatedAt: new Date(0).toISOString(), export: exported,
    });
    const conflicts = (): number => lines.filter((l) => l.code === CODE.ZONE_EXPORT_CONFLICT).length;
    const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
    registry.connect(instance('a', '10.0.0.1', true));
    registry.connect(instance('b', '10.0.0.2', false));
    await tick();
    expect(conflicts()).toBe(1);
    expect(lines.find((l) => l.code === CODE.ZONE_EXPORT_CONFLICT)?.service).toBe('shop/orders');
    registry.setHealth('a', false);
    await tick();
    expect(conflicts()).toBe(1);
    registry.connect(instance('b', '10.0.0.2', true));
    await tick();
    registry.connect(instance('b', '10.0.0.2', false));
    await tick();
    expect(conflicts()).toBe(2);
    registry.close();
  });
});
