/**
 * The package installs as a user would install it: `npm pack`, then `npm install -g --prefix TMP` of the
 * tarball, then the `trellis` that npm linked into TMP/bin runs (--help, --version, ca init) and has its
 * native addons built at install. The dependencies come from npm's cache when `npm ci` ran (--prefer-offline)
 * and from the registry otherwise. The global install runs on the Node that runs these tests, first on PATH,
 * as a user's Node would be.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
let dir: string;
let prefix: string;
let installed: SpawnSyncReturns<string>;

/** The environment of a user's shell: this Node first on PATH, none of the outer npm's lifecycle settings. */
function userEnv(): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_(config|lifecycle|package|command|execpath|node_execpath)/i.test(k)));
  return { ...env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}` };
}

function run(command: string, args: string[], cwd = dir): SpawnSyncReturns<string> {
  return spawnSync(command, args, { cwd, env: userEnv(), encoding: 'utf8', timeout: 300_000 });
}

beforeAll(() => {
  if (!existsSync(join(ROOT, 'dist/cli/bin.js'))) throw new Error('dist/ is not built: run `npm run build` first');
  dir = mkdtempSync(join(tmpdir(), 'trellis-package-'));
  prefix = join(dir, 'prefix');
  // dist/ is what `npm test` just built; prepack would only build it again.
  const packed = run('npm', ['pack', '--ignore-scripts', '--pack-destination', dir, ROOT]);
  if (packed.status !== 0) throw new Error(`npm pack failed: ${packed.stderr}`);
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  if (tarball === undefined) throw new Error(`npm pack wrote no tarball: ${packed.stdout}`);
  installed = run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', join(dir, tarball)]);
}, 300_000);

afterAll(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('npm install -g of the packed tarball', () => {
  it('installs, links trellis into PREFIX/bin and builds the native addons for this Node', () => {
    expect(installed.status, installed.stderr).toBe(0);
    expect(existsSync(join(prefix, 'bin/trellis'))).toBe(true);
    expect(installed.stderr).toContain(`building the native addons for Node ${process.version}`);
    const pkg = join(prefix, 'lib/node_modules/trellis-mesh');
    for (const addon of ['memory_trim.node', 'original_dst.node']) expect(existsSync(join(pkg, 'build/Release', addon)), addon).toBe(true);
    // Only what runs: no TypeScript sources, no tests.
    expect(existsSync(join(pkg, 'cli/main.ts'))).toBe(false);
    expect(existsSync(join(pkg, 'test'))).toBe(false);
  });

  it('gives a trellis that answers --help and --version', () => {
    const help = run(join(prefix, 'bin/trellis'), ['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('Usage: trellis <command>');
    const version = run(join(prefix, 'bin/trellis'), ['--version']);
    expect(version.stdout).toBe(`trellis 0.1.0 (node ${process.version})\n`);
  });

  it('gives a trellis that makes a CA (trellis ca init)', () => {
    const init = run(join(prefix, 'bin/trellis'), ['ca', 'init', '--dir', join(dir, 'ca'), '--trust-domain', 'example.org']);
    expect(init.stderr).toBe('');
    expect(init.status).toBe(0);
    for (const file of ['ca.crt', 'ca.key', 'bundle.pem']) expect(existsSync(join(dir, 'ca', file)), file).toBe(true);
  });
});
