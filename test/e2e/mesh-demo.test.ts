/**
 * The README's quick start: `trellis demo` starts a mesh, shows an allowed and two denied calls with the
 * deciding rules, exits 0, and leaves no process and no temp dir behind; `--zones 2` does the same across
 * a global control plane and two zones with their ingresses, and shows orders failing over from east to west.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { cleanup, exited, MAIN, requireBuild, trellis } from './mesh-support.js';

/**
 * The two-zone demo starts nine processes: on the 2-core CI machine under the full suite that took over
 * 80 s (mesh-support's `trellis()` limit) where it takes about 20 s alone, so it gets its own, longer one.
 */
const ZONES_DEMO_LIMIT_MS = 170_000;

function zonesDemo(args: readonly string[], mark: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, 'demo', '--zones', '2', ...args], { timeout: ZONES_DEMO_LIMIT_MS, env: { ...process.env, [MARK_VAR]: mark } }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

/**
 * Processes still running that a given demo run started. Each run gets a unique marker in its environment,
 * which every process it starts inherits: other suites (the UI's browser tests) run `trellis demo` at the
 * same time on the same machine, so "any demo process" would be theirs too.
 */
function leftovers(mark: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/environ`).includes(`${MARK_VAR}=${mark}`)) found.push(readFileSync(`/proc/${pid}/cmdline`).toString().replaceAll('\0', ' '));
    } catch {
      // Gone between the listing and the read, or not ours to read.
    }
  }
  return found;
}

const MARK_VAR = 'TRELLIS_DEMO_TEST_MARK';
const newMark = (): string => randomUUID();

afterAll(cleanup);

describe('trellis demo', { timeout: 100_000 }, () => {
  it('runs the whole mesh, shows the policy holding, exits 0 and cleans up', async () => {
    requireBuild();
    const mark = newMark();
    const { code, stdout, stderr } = await trellis(['demo'], { ...process.env, [MARK_VAR]: mark });
    expect(stderr).not.toMatch(/trellis demo:/);
    expect(code).toBe(0);
    expect(stdout).toContain('spiffe://trellis.local/ns/demo/sa/frontend');
    expect(stdout).toMatch(/frontend → orders:\s+HTTP 201/);
    expect(stdout).toMatch(/orders → payments:\s+HTTP 403, trellis-denied-by: default-deny/);
    expect(stdout).toMatch(/frontend → payments: HTTP 403, trellis-denied-by: demo\/payments-callers#1/);
    expect(stdout).toMatch(/trellis_policy_denials_total\{.*policy="demo\/payments-callers",rule="1"/);
    expect(stdout).toContain('Everything behaved as the policy says.');
    const dirs = /files kept in (\S+)/.exec(stderr);
    expect(dirs).toBeNull();
    expect(leftovers(mark)).toEqual([]);
  });

  it('--zones 2: a call crosses from east to west through west\'s ingress, west\'s policy refuses another, orders fails over to west; cleans up', { timeout: ZONES_DEMO_LIMIT_MS + 10_000 }, async () => {
    requireBuild();
    const mark = newMark();
    const { code, stdout, stderr } = await zonesDemo([], mark);
    expect(stderr).not.toMatch(/trellis demo:/);
    expect(code, stdout + stderr).toBe(0);
    expect(stdout).toMatch(/global control plane\s+https:\/\/127\.0\.0\.1:\d+/);
    expect(stdout).toMatch(/zone east\s+ingress\s+127\.0\.0\.1:\d+/);
    expect(stdout).toMatch(/zone west\s+ingress\s+127\.0\.0\.1:\d+/);
    expect(stdout).toMatch(/payments-west\s+west\s+spiffe:\/\/trellis\.local\/ns\/demo\/sa\/payments/);
    expect(stdout).toMatch(/frontend → orders:\s+HTTP 201, served in east/);
    expect(stdout).toMatch(/orders → payments:\s+HTTP 200, served in west/);
    // payments' own agent verified orders' identity through west's ingress (nested TLS: the ingress is not the caller).
    expect(stdout).toMatch(/payments saw caller:\s+spiffe:\/\/trellis\.local\/ns\/demo\/sa\/orders /);
    expect(stdout).toMatch(/frontend → payments:\s+HTTP 403, trellis-denied-by: demo\/payments-callers#1/);
    expect(stdout).toMatch(/trellis_ingress_streams_total\{result="ok",source_zone="east",destination="demo\/payments"\} [1-9]/);
    // orders dies in east: frontend's checkouts are served by orders in west, and the demo says how fast.
    expect(stdout).toMatch(/served by orders in west \d+\.\d s after east's orders stopped; \d+ of \d+ checkouts failed meanwhile/);
    expect(stdout).toMatch(/ok {4}frontend's checkouts fail over to orders in west within 15 s/);
    expect(stdout).toContain('Everything behaved as the policy and the zones say.');
    expect(leftovers(mark)).toEqual([]);
  });

  it('--zones 2 --keep-running stays up and answers across zones until a signal, then stops everything', { timeout: ZONES_DEMO_LIMIT_MS + 20_000 }, async () => {
    requireBuild();
    const mark = newMark();
    const child = spawn(process.execPath, [MAIN, 'demo', '--zones', '2', '--keep-running'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, [MARK_VAR]: mark } });
    let stdout = '';
    let dir = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    try {
      const deadline = Date.now() + ZONES_DEMO_LIMIT_MS;
      while (!stdout.includes('Ctrl-C stops everything') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 200));
      const url = /curl (http:\/\/127\.0\.0\.1:\d+\/checkout)/.exec(stdout)?.[1];
      expect(url, stdout).toBeDefined();
      dir = /policies in (\/\S+)\/zone-east-policy/.exec(stdout)?.[1] ?? '';
      expect(dir, stdout).toMatch(/trellis-demo-/);
      const reply = await fetch(url!);
      expect(reply.status).toBe(200);
      // frontend's reply nests orders' reply, which nests payments' (only in west).
      const chain = JSON.parse(await reply.text()) as { order: { body: string } };
      const payment = (JSON.parse(chain.order.body) as { payment: { status: number; body: string } }).payment;
      expect(payment.status).toBe(200);
      expect(JSON.parse(payment.body)).toMatchObject({ service: 'payments', zone: 'west' });
    } finally {
      child.kill('SIGINT');
      await exited(child);
    }
    // This demo's own processes only: other suites on the machine may run a demo at the same time.
    expect(leftovers(mark)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
  });

  it('--zones takes 1 or 2 only', async () => {
    const { code, stderr } = await trellis(['demo', '--zones', '3']);
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/--zones: "3" is not 1 or 2/);
  });
});
