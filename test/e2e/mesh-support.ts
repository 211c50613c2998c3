/**
 * Real processes on loopback for the mesh end-to-end suites: `trellis control run` and `trellis agent run`
 * spawned from the built CLI, apps as small HTTP servers in the test process, a load generator that
 * counts every failed request. Every process and temp dir is tracked and removed by `cleanup()`.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseDuration } from '../../common/duration.js';
import { FileStore } from '../../control/file-store.js';
import { TokenService } from '../../control/token-service.js';
import { readDataDirIdentity } from '../../control/identity-file.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const MAIN = join(ROOT, 'dist/cli/main.js');

export function requireBuild(): void {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first`);
}

export interface Proc {
  readonly child: ChildProcess;
  readonly ready: Record<string, unknown>;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const children = new Set<ChildProcess>();
const dirs: string[] = [];
const servers: Server[] = [];

export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

export function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(child.exitCode) : child.once('exit', (code) => r(code))));
}

/** Runs `trellis ARGS` to completion. */
export function trellis(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    execFile(process.execPath, [MAIN, ...args], { timeout: 80_000, env }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1;
      resolvePromise({ code, stdout, stderr });
    });
  });
}

/** Spawns a long-running `trellis` command and waits for its JSON ready line (or its exit). */
export function spawnTrellis(args: readonly string[], timeoutMs = 20_000): Promise<Proc> {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let output = '';
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const proc = (ready: Record<string, unknown>): Proc => ({
    child,
    ready,
    output: () => output,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited(child);
    },
  });
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`trellis ${args.slice(0, 2).join(' ')} not ready within ${timeoutMs} ms:\n${output.slice(-3000)}`));
    }, timeoutMs);
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      if (!line.startsWith('{"event":"ready"')) return;
      clearTimeout(timer);
      resolvePromise(proc(JSON.parse(line) as Record<string, unknown>));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`trellis ${args.slice(0, 2).join(' ')} exited with ${code}:\n${output.slice(-3000)}`), { exitCode: code, output }));
    });
  });
}

export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/** An HTTP app that answers `<name> <METHOD> <path>` and counts requests. */
export async function app(name: string): Promise<{ port: number; hits: () => number; server: Server }> {
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    req.resume();
    req.on('end', () => res.end(`${name} ${req.method} ${req.url}\n`));
  });
  // Long enough for a test to hold a kept-alive connection across a config change.
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return { port: (server.address() as AddressInfo).port, hits: () => hits, server };
}

export interface HttpResult {
  readonly status: number;
  readonly body: string;
}

/** One request on a fresh connection; a reset or refusal rejects. */
export function call(port: number, path = '/', method = 'GET', timeoutMs = 5_000): Promise<HttpResult> {
  return new Promise((resolvePromise, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Polls `fn` until it resolves truthy, on real time (for processes, not for asserting speed). */
export async function eventually<T>(fn: () => Promise<T | undefined | false>, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last === undefined ? '' : ` (last error: ${(last as Error).message})`}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Steady load: `concurrency` loops of sequential requests, each failure recorded with its reason. */
export function steadyLoad(port: number, concurrency = 4): { stop(): Promise<{ ok: number; failures: string[] }> } {
  let running = true;
  let ok = 0;
  const failures: string[] = [];
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) {
      try {
        const res = await call(port, '/load', 'GET', 5_000);
        if (res.status === 200) ok++;
        else failures.push(`status ${res.status}: ${res.body.slice(0, 200)}`);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      return { ok, failures };
    },
  };
}

export interface Mesh {
  readonly dir: string;
  readonly dataDir: string;
  readonly policyDir: string;
  control: Proc;
  readonly api: () => string;
  startControl(extra?: readonly string[]): Promise<Proc>;
  token(service: string, ttl?: string, namespace?: string, role?: 'ingress'): Promise<string>;
  agent(options: AgentOptions): Promise<Proc>;
  setPolicy(name: string, yaml: string): void;
}

export interface AgentOptions {
  readonly service: string;
  readonly appPort: number;
  readonly protocol?: 'http' | 'tcp' | 'http2' | 'grpc';
  readonly upstreams?: readonly string[];
  readonly tokenFile?: string;
  readonly dataDir?: string;
  readonly extra?: readonly string[];
}

export function allow(destination: string, from: readonly string[], methods?: readonly string[]): string {
  return `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: ${destination}-callers, namespace: default }
spec:
  destination: ${destination}
  mode: enforce
  rules:
    - action: allow
      from: [${from.join(', ')}]
${methods === undefined ? '' : `      http: { methods: [${methods.join(', ')}] }\n`}`;
}

/** A control plane with a policy dir on loopback; agents and tokens made against it. */
export async function startMesh(policies: Readonly<Record<string, string>>, controlArgs: readonly string[] = []): Promise<Mesh> {
  const dir = tempDir('trellis-mesh-');
  const dataDir = join(dir, 'control');
  const policyDir = join(dir, 'policy');
  mkdirSync(policyDir);
  for (const [name, yaml] of Object.entries(policies)) writeFileSync(join(policyDir, name), yaml);
  let apiPort = 0;
  const mesh: Mesh = {
    dir,
    dataDir,
    policyDir,
    control: undefined as unknown as Proc,
    api: () => `https://127.0.0.1:${apiPort}`,
    async startControl(extra: readonly string[] = controlArgs) {
      // The same API port across restarts, as agents are configured with one URL.
      const listen = apiPort === 0 ? '127.0.0.1:0' : `127.0.0.1:${apiPort}`;
      const proc = await spawnTrellis(['control', 'run', '--data-dir', dataDir, '--policy', policyDir, '--listen', listen, '--admin', '127.0.0.1:0', '--log-level', 'warn', ...extra], 60_000);
      apiPort = Number(new URL(proc.ready.api as string).port);
      mesh.control = proc;
      return proc;
    },
    async token(service: string, ttl = '10m', namespace = 'default', role?: 'ingress') {
      // In this process, like `trellis token create --data-dir` does offline (saves a CLI start per agent).
      const file = join(dir, `${service}-${Math.random().toString(36).slice(2)}.token`);
      // The control plane's own trust domain (a zone with its own PKI has another than trellis.local).
      const identity = await readDataDirIdentity(dataDir);
      const tokens = new TokenService(await FileStore.open(dataDir), identity?.trustDomain ?? 'trellis.local', Date.now, identity?.rootNamespace);
      const { token } = await tokens.create(service, namespace, parseDuration(ttl), 1, role);
      writeFileSync(file, `${token}\n`, { mode: 0o600 });
      return file;
    },
    async agent(options: AgentOptions) {
      const tokenFile = options.tokenFile ?? (await mesh.token(options.service));
      return spawnTrellis([
        'agent', 'run', '--control', mesh.api(), '--token-file', tokenFile, '--ca-file', join(dataDir, 'trust-bundle.pem'),
        '--service', options.service, '--app-port', String(options.appPort), '--protocol', options.protocol ?? 'tcp',
        '--tunnel', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--health-interval', '500ms', '--drain-grace', '1s', '--log-level', 'warn', '--no-access-log',
        ...(options.upstreams ?? []).flatMap((u) => ['--upstream', u]),
        ...(options.dataDir === undefined ? [] : ['--data-dir', options.dataDir]),
        ...(options.extra ?? []),
      ]);
    },
    setPolicy(name: string, yaml: string) {
      writeFileSync(join(policyDir, name), yaml);
    },
  };
  await mesh.startControl();
  return mesh;
}

export async function cleanup(): Promise<void> {
  await Promise.all([...children].map(async (child) => {
    child.kill('SIGKILL');
    await exited(child);
  }));
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}
