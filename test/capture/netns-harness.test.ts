/**
 * The network-namespace lab (test/helpers/netns.ts) that the capture and end-to-end suites stand on:
 * hosts reach each other only through the lab's own bridge, the root namespace never changes, and every
 * namespace and process goes away on cleanup, on SIGTERM, and (by the next run's sweep) after SIGKILL.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNetnsLab, listLabNamespaces, netnsRequirements, type NetnsLab } from '../helpers/netns.js';
import { transpileModules, type TranspiledModules } from './transpiled.js';

const need = netnsRequirements();
const LAB_THEN_WAIT = fileURLToPath(new URL('./fixtures/lab-then-wait.mjs', import.meta.url));
const SERVER = fileURLToPath(new URL('./fixtures/capture-server.mjs', import.meta.url));
const CLIENT = fileURLToPath(new URL('./fixtures/tcp-client.mjs', import.meta.url));

function rootLinks(): string[] {
  return execFileSync('ip', ['-o', 'link', 'show']).toString().split('\n').map((l) => l.split(':')[1]?.trim() ?? '').filter((n) => n !== '').sort();
}

/** Running, as opposed to gone or a zombie (a container's pid 1 may never reap reparented children). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}

/** Starts the fixture that builds a lab in its own process, and returns what it made. */
async function labInChild(netnsModule: string): Promise<{ child: ReturnType<typeof spawn>; made: { runId: string; namespaces: string[]; sleeper: number } }> {
  const child = spawn(process.execPath, [LAB_THEN_WAIT, netnsModule], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0] ?? '');
    });
    child.once('exit', (code) => reject(new Error(`lab fixture exited ${code} before reporting`)));
  });
  return { child, made: JSON.parse(line) as { runId: string; namespaces: string[]; sleeper: number } };
}

describe.skipIf(need.skip)('network namespace lab', () => {
  let lab: NetnsLab;
  let transpiled: TranspiledModules;
  beforeAll(async () => {
    lab = await createNetnsLab();
    transpiled = transpileModules(['test/helpers/netns.ts', 'test/helpers/lab-process.ts', 'test/helpers/requirements.ts', 'capture/command-runner.ts']);
  });
  afterAll(async () => {
    const runId = lab?.runId;
    await lab?.cleanup();
    transpiled?.remove();
    if (runId !== undefined) expect(listLabNamespaces(runId)).toEqual([]);
  });

  it('connects hosts through its own bridge without adding anything to the root namespace', async () => {
    const before = rootLinks();
    const a = await lab.addHost('a');
    const b = await lab.addHost('b');
    expect(rootLinks()).toEqual(before);
    expect(a.ipv4).toMatch(/^198\.18\.0\.\d+$/);
    const server = lab.spawn(b, ['node', SERVER, '--label', 'b', '--port', '7000']);
    await server.waitForOutput(/listening/);
    const answer = await lab.exec(a, ['node', CLIENT, b.ipv4, '7000']);
    expect(JSON.parse(answer.stdout)).toMatchObject({ label: 'b', remote: { address: `::ffff:${a.ipv4}` } });
    await server.stop();
    const route = await lab.exec(a, ['ip', '-o', 'route', 'get', b.ipv4]);
    expect(route.stdout).toContain('dev eth0');
    await expect(lab.addHost('a')).rejects.toThrow(/already exists/);
  });

  it('runs commands as another user, and reports failures with their output', async () => {
    const a = lab.hosts.find((h) => h.name === 'a') ?? (await lab.addHost('a'));
    expect((await lab.exec(a, ['id', '-u'], { uid: 4000 })).stdout.trim()).toBe('4000');
    expect((await lab.exec(a, ['id', '-g'], { uid: 4000, gid: 4001 })).stdout.trim()).toBe('4001');
    expect((await lab.exec(a, ['sh', '-c', 'echo "$LAB_VALUE $(id -u)"'], { uid: 4000, env: { LAB_VALUE: 'a b' } })).stdout.trim()).toBe('a b 4000');
    await expect(lab.exec(a, ['sh', '-c', 'echo broken >&2; exit 3'])).rejects.toThrow(/exited 3: broken/);
    expect((await lab.exec(a, ['sh', '-c', 'exit 3'], { allowFailure: true })).code).toBe(3);
  });

  it('gives parallel labs their own names', async () => {
    const other = await createNetnsLab();
    try {
      const host = await other.addHost('a');
      expect(other.runId).not.toBe(lab.runId);
      expect(host.netns).not.toBe(lab.hosts.find((h) => h.name === 'a')?.netns);
    } finally {
      await other.cleanup();
    }
    expect(listLabNamespaces(other.runId)).toEqual([]);
  });

  it('stops a process that ignores SIGTERM, and removes its namespaces', async () => {
    const other = await createNetnsLab();
    const host = await other.addHost('stubborn');
    const proc = other.spawn(host, ['sh', '-c', 'trap "" TERM; echo ready; while true; do sleep 1; done']);
    await proc.waitForOutput(/ready/);
    const pid = proc.child.pid ?? -1;
    await other.cleanup();
    expect(alive(pid)).toBe(false);
    expect(listLabNamespaces(other.runId)).toEqual([]);
  });

  it('removes everything when the process that made the lab is interrupted', async () => {
    const { child, made } = await labInChild(transpiled.path('test/helpers/netns.ts'));
    expect(made.namespaces).toHaveLength(3);
    expect(listLabNamespaces(made.runId).sort()).toEqual([...made.namespaces].sort());
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
    expect(listLabNamespaces(made.runId)).toEqual([]);
    expect(alive(made.sleeper)).toBe(false);
  });

  it("sweeps a killed run's leftovers when the next lab is made", async () => {
    const { child, made } = await labInChild(transpiled.path('test/helpers/netns.ts'));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    expect(listLabNamespaces(made.runId)).toHaveLength(3);
    const next = await createNetnsLab();
    await next.cleanup();
    expect(listLabNamespaces(made.runId)).toEqual([]);
    expect(alive(made.sleeper)).toBe(false);
  });
});
