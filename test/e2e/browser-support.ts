/**
 * Debian's Chromium, headless through playwright-core, for the UI suites: launched with the flags that keep
 * it off the network and a fresh profile, every request outside the UI's origin aborted; screenshots go to
 * test-artifacts/ui/ (gitignored). Without Chromium a suite is skipped, except in CI (`CI=true`), where
 * .ci/run installs it and its absence is a failure.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ROOT } from './mesh-support.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'test-artifacts', 'ui');
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export const chromiumAvailable = existsSync(CHROMIUM);
if (!chromiumAvailable && process.env.CI === 'true') throw new Error(`CI=true and ${CHROMIUM} is missing (.ci/run installs the chromium package)`);

export interface UiBrowser {
  readonly page: Page;
  shot(name: string): Promise<void>;
  close(): Promise<void>;
}

/** A browser whose page may ask only `ui`'s origin for anything. */
export async function openUiBrowser(ui: string): Promise<UiBrowser> {
  const profile = mkdtempSync(join(tmpdir(), 'trellis-chromium-'));
  let context: BrowserContext | undefined;
  try {
    context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 420, height: 900 } });
    const origin = new URL(ui).origin;
    await context.route('**/*', (route) => (route.request().url().startsWith(origin) ? route.continue() : route.abort()));
    const page = await context.newPage();
    const opened = context;
    return {
      page,
      shot: async (name) => {
        mkdirSync(ARTIFACTS, { recursive: true });
        await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
      },
      close: async () => {
        await opened.close();
        rmSync(profile, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await context?.close();
    rmSync(profile, { recursive: true, force: true });
    throw err;
  }
}
