/**
 * The project brings its own Node.js: the `node` devDependency (npm's build of one exact version) is first
 * on PATH in every `npm run` script, so `npm test` runs the vitest workers, every child process they start
 * and the native addons on that version, whatever Node the machine has. These tests fail when something
 * runs on another one (e.g. vitest started by the system's node, or an addon built against its headers).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const MAIN = join(ROOT, 'dist/cli/main.js');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string }; devDependencies: Record<string, string> };
/** The pinned runtime, e.g. "24.21.0". */
const PINNED = pkg.devDependencies.node as string;

describe('runtime', () => {
  it('is pinned to one exact version, within the supported engines', () => {
    expect(PINNED).toMatch(/^\d+\.\d+\.\d+$/);
    const floor = /^>=(\d+)/.exec(pkg.engines.node)?.[1];
    expect(floor).toBe('24');
    expect(Number(PINNED.split('.')[0])).toBeGreaterThanOrEqual(Number(floor));
  });

  it('runs this test worker on the pinned Node', () => {
    expect(process.version).toBe(`v${PINNED}`);
  });

  it('gives a child that runs `node` from PATH the same Node', () => {
    const child = spawnSync('node', ['-p', 'process.version'], { encoding: 'utf8' });
    expect(child.stdout.trim()).toBe(`v${PINNED}`);
  });

  it('runs a spawned trellis CLI on the same Node', () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first`);
    const child = spawnSync(process.execPath, [MAIN, '--version'], { encoding: 'utf8' });
    expect(child.status).toBe(0);
    expect(child.stdout).toBe(`trellis 0.1.0 (node v${PINNED})\n`);
  });

  it('runs `npx trellis` in the checkout on the same Node', () => {
    // The binary is the bin launcher, executable after `npm run build` (npx runs it by its shebang).
    const child = spawnSync('npx', ['--no-install', 'trellis', '--version'], { cwd: ROOT, encoding: 'utf8' });
    expect(child.stdout).toBe(`trellis 0.1.0 (node v${PINNED})\n`);
    expect(child.status).toBe(0);
  });

  it('has its native addons built for this Node', () => {
    // node-gyp records the version and headers it built against; Node-API addons would load on a later
    // Node anyway, so loading alone would not tell a build against the system's Node apart.
    const gypi = readFileSync(join(ROOT, 'build/config.gypi'), 'utf8');
    expect(gypi).toContain(`"target": "${PINNED}"`);
    expect(gypi).toContain(`"node_module_version": ${process.versions.modules},`);
    const require = createRequire(import.meta.url);
    expect(typeof (require(join(ROOT, 'build/Release/memory_trim.node')) as { trim?: unknown }).trim).toBe('function');
  });
});
