/**
 * The web UI in a real browser against a running local mesh: `trellis demo --keep-running` on loopback,
 * Debian's headless Chromium driven by playwright-core (launched with the flags that keep it off the
 * network, and a fresh profile). Shown: the graph has the demo's edges with live numbers, a denied call
 * appears in recent denials with its rule within seconds, explain answers, and the keyboard moves between
 * views. Screenshots go to test-artifacts/ui/ (browser-support.ts launches Chromium).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Page } from 'playwright-core';
import { chromiumAvailable, openUiBrowser, type UiBrowser } from './browser-support.js';
import { MAIN, call, exited, requireBuild } from './mesh-support.js';

let demo: ChildProcess | undefined;
let output = '';
let browser: UiBrowser | undefined;
let page: Page;
let ui = '';

const shot = (name: string): Promise<void> => (browser as UiBrowser).shot(name);

describe.skipIf(!chromiumAvailable)('the web UI in headless Chromium', { timeout: 120_000 }, () => {
  beforeAll(async () => {
    requireBuild();
    demo = spawn(process.execPath, [MAIN, 'demo', '--keep-running'], { stdio: ['ignore', 'pipe', 'pipe'] });
    demo.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    demo.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const started = Date.now();
    while (!/The web UI: (\S+)/.test(output)) {
      if (Date.now() - started > 60_000 || demo.exitCode !== null) throw new Error(`the demo did not print the UI's address:\n${output}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    ui = (/The web UI: (\S+)/.exec(output) as RegExpExecArray)[1] as string;
    expect(ui).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/ui\/$/);
    // Nothing but the UI's own origin may be asked for: anything else fails the page.
    browser = await openUiBrowser(ui);
    page = browser.page;
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    if (demo !== undefined && demo.exitCode === null) {
      demo.kill('SIGTERM');
      const timer = setTimeout(() => demo?.kill('SIGKILL'), 10_000);
      await exited(demo);
      clearTimeout(timer);
    }
  }, 30_000);

  it('shows the demo\'s edges in the graph with live numbers', async () => {
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(`${ui}#graph`);
    const row = page.locator('tr[data-edge="demo/frontend>demo/orders"]');
    await row.waitFor({ timeout: 20_000 });
    await expect.poll(async () => (await row.locator('td.rate').textContent()) ?? '', { timeout: 20_000 }).toMatch(/^(?!0\.00)\d+\.\d\d\/s$/);
    for (const edge of ['demo/orders>demo/payments', 'demo/frontend>demo/payments']) await page.locator(`tr[data-edge="${edge}"]`).waitFor({ timeout: 20_000 });
    await expect(page.locator('svg.graph g[data-edge="demo/frontend>demo/payments"] line.denied').count()).resolves.toBe(1);
    await shot('graph');
    expect(requests.every((u) => u.startsWith(new URL(ui).origin))).toBe(true);
  });

  it('shows a denied call in recent denials with its rule within seconds', async () => {
    const ordersPort = Number((/curl http:\/\/127\.0\.0\.1:(\d+)\/refund-check/.exec(output) as RegExpExecArray)[1]);
    await page.goto(`${ui}#denials`);
    const sent = Date.now();
    // orders → payments GET: no rule allows it, so default-deny decides (the demo's traffic never sends it).
    expect((await call(ordersPort, '/refund-check')).status).toBe(200);
    // The demo made this call once at start-up: only a row heard after this call counts.
    const heardSince = async (): Promise<number> => {
      const times = await page.locator('tr.denial', { hasText: 'demo/orders' }).filter({ hasText: 'default-deny' }).evaluateAll((rows) => rows.map((r) => Date.parse(r.getAttribute('data-at') ?? '')));
      return times.filter((t) => t >= sent).length;
    };
    await expect.poll(heardSince, { timeout: 15_000, interval: 250 }).toBeGreaterThan(0);
    expect(Date.now() - sent).toBeLessThan(15_000);
    await expect(page.locator('tr.denial', { hasText: 'demo/payments-callers#1' }).count()).resolves.toBeGreaterThan(0);
    await shot('denials');
  });

  it('answers explain with the deciding rule, from the keyboard', async () => {
    await page.goto(`${ui}#zones`);
    await page.locator('#tab-zones').focus();
    // Arrow keys move along the tabs: zones → services → graph → policy.
    for (let i = 0; i < 3; i++) await page.keyboard.press('ArrowRight');
    expect(await page.locator('#tab-policy').evaluate((el) => el === el.ownerDocument.activeElement)).toBe(true);
    await page.getByLabel('from').fill('demo/frontend');
    await page.getByLabel('to').fill('demo/payments');
    await page.getByLabel('to').press('Enter');
    await expect.poll(async () => (await page.locator('.explain-answer').textContent()) ?? '', { timeout: 10_000 }).toMatch(/denied by demo\/payments-callers#1/);
    await page.getByLabel('from').fill('demo/orders');
    await page.getByLabel('method').fill('POST');
    await page.getByLabel('path').fill('/charge');
    await page.getByLabel('path').press('Enter');
    await expect.poll(async () => (await page.locator('.explain-answer').textContent()) ?? '', { timeout: 10_000 }).toMatch(/allowed by demo\/payments-callers#0/);
    await expect(page.locator('table.matrix td.cell.bad').count()).resolves.toBeGreaterThan(0);
    await shot('policy');
  });

  it('shows the zone and its agents', async () => {
    await page.goto(`${ui}#zones`);
    await page.locator('tr[data-zone="default"]').waitFor({ timeout: 10_000 });
    await expect(page.locator('tr[data-zone="default"]').textContent()).resolves.toContain('standalone');
    await page.goto(`${ui}#services`);
    await page.getByText('demo/payments').first().waitFor({ timeout: 10_000 });
    await shot('services');
  });
});
