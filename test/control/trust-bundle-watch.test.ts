/**
 * The CA directory's bundle.pem, watched: a valid change (old + new root) is taken and normalised, an
 * atomic replace is noticed by the watch alone, and a bad file (garbage, one that drops the root the
 * zone issues under, a missing file) is refused with a clear log line, reported once per content, and
 * leaves the bundle in force as it was.
 */
import { mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { TrustBundleWatch } from '../../control/trust-bundle-watch.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';

let mesh: TestPki;
let next: TestPki;
beforeAll(async () => {
  mesh = await createTestPki({ trustDomain: 'trellis.local' });
  next = await createTestPki({ trustDomain: 'trellis.local' });
});

let dir: string;
let path: string;
let current: string;
let changes: string[];
let rejected: string[];
let logLines: { msg: string; reason?: string; path?: string; level: number }[];
let watcher: TrustBundleWatch;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'trellis-bundle-watch-'));
  path = join(dir, 'bundle.pem');
  writeFileSync(path, mesh.bundlePem);
  current = mesh.bundlePem;
  changes = [];
  rejected = [];
  logLines = [];
  const log = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _e, cb) => (logLines.push(JSON.parse(chunk.toString()) as (typeof logLines)[number]), cb()) }));
  watcher = new TrustBundleWatch({
    path,
    trustDomain: 'trellis.local',
    issuers: [mesh.root, mesh.intermediate],
    current: () => current,
    onChange: (pem) => {
      current = pem;
      changes.push(pem);
    },
    onRejected: (reason) => rejected.push(reason),
    log,
    debounceMs: 20,
    pollIntervalMs: 60_000,
  });
  await watcher.start();
});

afterEach(() => {
  watcher.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('TrustBundleWatch', () => {
  it('takes a bundle with the new root beside the old one, and ignores a rewrite with the same roots', async () => {
    await watcher.check();
    expect(changes).toEqual([]);
    writeFileSync(path, `# rotation step 1\n${mesh.bundlePem}\n${next.bundlePem}`);
    await watcher.check();
    expect(changes).toEqual([mesh.bundlePem + next.bundlePem]);
    writeFileSync(path, mesh.bundlePem + next.bundlePem + mesh.bundlePem);
    await watcher.check();
    expect(changes).toHaveLength(1);
    expect(rejected).toEqual([]);
  });

  it('notices an atomic replace by itself (fs.watch, debounced)', async () => {
    writeFileSync(join(dir, '.bundle.tmp'), mesh.bundlePem + next.bundlePem);
    renameSync(join(dir, '.bundle.tmp'), path);
    await vi.waitFor(() => expect(changes).toEqual([mesh.bundlePem + next.bundlePem]), { timeout: 5_000 });
  });

  it('refuses garbage with a clear log line, once per content, and keeps the bundle in force', async () => {
    writeFileSync(path, 'not a certificate\n');
    await watcher.check();
    await watcher.check();
    expect(changes).toEqual([]);
    expect(current).toBe(mesh.bundlePem);
    expect(rejected).toHaveLength(1);
    const line = logLines.find((l) => l.msg === 'trust bundle file rejected; the bundle in force stays');
    expect(line).toMatchObject({ level: 50, path });
    expect(line?.reason).toMatch(/trust bundle for trellis\.local/);
  });

  it('refuses a bundle without the root the zone issues under, and a missing file', async () => {
    writeFileSync(path, next.bundlePem);
    await watcher.check();
    expect(rejected[0]).toMatch(/the issuing CA would no longer be trusted/);
    unlinkSync(path);
    await watcher.check();
    expect(rejected[1]).toBe('the file is missing');
    expect(changes).toEqual([]);
    // Put right, it is taken.
    writeFileSync(path, mesh.bundlePem + next.bundlePem);
    await watcher.check();
    expect(changes).toHaveLength(1);
  });
});
