/**
 * The global control plane's web UI in headless Chromium (browser-support.ts): a global and a zone as real
 * processes on loopback; the global's admin serves the UI with only the views a global has (zones and the
 * merged graph); the zone shows online with its golden-metrics report heard over mutual TLS; the zone's
 * process is stopped and the UI shows it offline within the lease. Screenshots go to test-artifacts/ui/.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { chromiumAvailable, openUiBrowser, type UiBrowser } from './browser-support.js';
import { cleanup, freePort, requireBuild, spawnTrellis, startMesh, tempDir, trellis, type Mesh, type Proc } from './mesh-support.js';

const LEASE_MS = 3_000;
let global: Proc;
let west: Mesh;
let browser: UiBrowser | undefined;
let ui = '';

describe.skipIf(!chromiumAvailable)('the global\'s web UI in headless Chromium', { timeout: 120_000 }, () => {
  beforeAll(async () => {
    requireBuild();
    const globalDir = tempDir('trellis-global-');
    const policyDir = tempDir('trellis-global-policy-');
    const globalPort = await freePort();
    global = await spawnTrellis(['control', 'run', '--mode', 'global', '--data-dir', globalDir, '--policy', policyDir, '--listen', `127.0.0.1:${globalPort}`, '--admin', '127.0.0.1:0', '--zone-lease', `${LEASE_MS / 1000}s`, '--log-level', 'warn'], 60_000);
    const tokenFile = join(globalDir, 'west.token');
    const made = await trellis(['zone', 'token', 'create', '--zone', 'west', '--data-dir', globalDir, '--output', tokenFile]);
    expect(made.code, made.stderr).toBe(0);
    west = await startMesh({}, ['--zone', 'west', '--global', `https://127.0.0.1:${globalPort}`, '--global-ca', join(globalDir, 'trust-bundle.pem'), '--global-token-file', tokenFile]);
    ui = `${global.ready.admin as string}/ui/`;
    browser = await openUiBrowser(ui);
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await cleanup();
  }, 30_000);

  it('shows the zone online with its golden metrics heard, and only the views a global has', async () => {
    const page = (browser as UiBrowser).page;
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(`${ui}#zones`);
    const row = page.locator('tr[data-zone="west"]');
    await row.waitFor({ timeout: 20_000 });
    await expect.poll(async () => row.getAttribute('data-state'), { timeout: 10_000 }).toBe('online');
    // The zone sends its edge view within 5 s of connecting (POST /v1/zone/golden over the sync session).
    await expect.poll(async () => (await row.locator('td').nth(5).textContent()) ?? '', { timeout: 15_000 }).toMatch(/^\d+ pairs, \d+ s ago$/);
    await expect(page.locator('[role="tab"]').allTextContents()).resolves.toEqual(['Zones', 'Graph']);
    await page.locator('#tab-zones').focus();
    await page.keyboard.press('ArrowRight');
    await page.locator('#graph-h, h2', { hasText: /graph/i }).first().waitFor({ timeout: 5_000 });
    await page.goto(`${ui}#zones`);
    await row.waitFor({ timeout: 10_000 });
    await (browser as UiBrowser).shot('global-zone-online');
    expect(requests.every((u) => u.startsWith(new URL(ui).origin))).toBe(true);
  });

  it('shows a stopped zone offline within the lease', async () => {
    const page = (browser as UiBrowser).page;
    const row = page.locator('tr[data-zone="west"]');
    await expect(row.getAttribute('data-state')).resolves.toBe('online');
    const stopped = Date.now();
    await west.control.stop('SIGKILL');
    await expect.poll(async () => row.getAttribute('data-state'), { timeout: LEASE_MS + 10_000, interval: 200 }).toBe('offline');
    // The lease, the global's lease check (a quarter of it) and the UI's 2 s poll: well within 2 leases.
    expect(Date.now() - stopped).toBeLessThan(2 * LEASE_MS + 2_500);
    await expect(row.locator('td').nth(1).textContent()).resolves.toBe('offline');
    await (browser as UiBrowser).shot('global-zone-offline');
  });
});
