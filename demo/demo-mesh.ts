/**
 * The demo's mesh as processes on loopback: one `trellis control run` and one `trellis agent run` per
 * service, each started from the same `trellis` binary the user ran, with every port chosen free at
 * start. `close()` stops them all (SIGTERM, then SIGKILL after a grace) and removes the temp dir, also
 * when the start fails half-way.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { TokenService } from '../control/token-service.js';
import { FileStore } from '../control/file-store.js';

export const DEMO_NAMESPACE = 'demo';
export const DEMO_TRUST_DOMAIN = 'trellis.local';

export interface DemoProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly ready: Record<string, unknown>;
  /** Everything the process logged (JSON lines), for finding the denial log line. */
  log(): string;
}

export interface AgentSpec {
  readonly service: string;
  readonly appPort: number;
  readonly upstreams: readonly string[];
}

/** The control plane an agent joins: its API URL and data dir (where its tokens are made, offline). */
export interface ControlTarget {
  readonly api: string;
  readonly dataDir: string;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

export class DemoMesh {
  readonly dir = mkdtempSync(join(tmpdir(), 'trellis-demo-'));
  readonly dataDir = join(this.dir, 'control');
  readonly policyDir = join(this.dir, 'policy');
  readonly processes: DemoProcess[] = [];
  control: DemoProcess | undefined;

  constructor(private readonly trellisMain: string, private readonly keepDir: boolean) {
    mkdirSync(this.policyDir);
  }

  writePolicy(name: string, yaml: string): void {
    writeFileSync(join(this.policyDir, name), yaml);
  }

  async startControl(): Promise<DemoProcess> {
    this.control = await this.spawn('control-plane', ['control', 'run', '--data-dir', this.dataDir, '--policy', this.policyDir, '--trust-domain', DEMO_TRUST_DOMAIN, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
    return this.control;
  }

  /** A join token for SERVICE made offline on TARGET's data dir, written to a 0600 file; returns its path. `role` `ingress`: the zone ingress's. */
  async tokenFile(target: ControlTarget, service: string, namespace: string, label = service, role?: 'ingress'): Promise<string> {
    const tokens = new TokenService(await FileStore.open(target.dataDir), DEMO_TRUST_DOMAIN);
    const { token } = await tokens.create(service, namespace, 3_600_000, 1, role);
    const tokenFile = join(this.dir, `${label}.token`);
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    return tokenFile;
  }

  /** An agent beside SPEC's app, joined to TARGET (by default the single control plane of `startControl`). */
  async startAgent(spec: AgentSpec, target: ControlTarget = { api: this.control?.ready.api as string, dataDir: this.dataDir }, label = spec.service): Promise<DemoProcess> {
    const tokenFile = await this.tokenFile(target, spec.service, DEMO_NAMESPACE, label);
    return this.spawn(label, [
      'agent', 'run', '--control', target.api, '--token-file', tokenFile, '--ca-file', join(target.dataDir, 'trust-bundle.pem'),
      '--service', spec.service, '--namespace', DEMO_NAMESPACE, '--app-port', String(spec.appPort), '--protocol', 'http',
      '--tunnel', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--health-interval', '1s', '--drain-grace', '1s', '--summary-interval', '2s',
      ...spec.upstreams.flatMap((u) => ['--upstream', u]),
    ]);
  }

  /** Runs a one-shot `trellis ARGS` (e.g. `zone token create`) to completion; rejects with its stderr on failure. */
  runOnce(args: readonly string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(process.execPath, [this.trellisMain, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
        if (err === null) resolve(stdout);
        else reject(new Error(`trellis ${args.slice(0, 3).join(' ')} failed: ${stderr.trim() || err.message}`));
      });
    });
  }

  /** Starts a long-running `trellis ARGS` and waits for its JSON ready line; `close()` stops it. */
  spawn(name: string, args: readonly string[]): Promise<DemoProcess> {
    const child = spawn(process.execPath, [this.trellisMain, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stderr?.on('data', (d: Buffer) => {
      // Keep the last 2 MB: enough to find recent lines, bounded however long --keep-running runs.
      log = (log + d.toString()).slice(-2_000_000);
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} did not start within 30 s:\n${log.slice(-2_000)}`)), 30_000);
      const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
      lines.on('line', (line) => {
        if (!line.startsWith('{"event":"ready"')) return;
        clearTimeout(timer);
        const proc: DemoProcess = { name, child, ready: JSON.parse(line) as Record<string, unknown>, log: () => log };
        this.processes.push(proc);
        resolve(proc);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited with ${code}:\n${log.slice(-2_000)}`));
      });
      this.processes.push({ name: `${name} (starting)`, child, ready: {}, log: () => log });
    });
  }

  async close(): Promise<void> {
    const children = [...new Set(this.processes.map((p) => p.child))].filter((c) => c.exitCode === null && c.signalCode === null);
    await Promise.all(children.map((child) => new Promise<void>((resolve) => {
      const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill('SIGTERM');
    })));
    if (!this.keepDir) rmSync(this.dir, { recursive: true, force: true });
  }
}
