/**
 * The moving parts of test/e2e/multizone-netns.test.ts, so that file reads as the story: `trellis`
 * processes started in lab hosts (test/helpers/netns-zones.ts), join tokens, and a client for each workload
 * host's apps (test/e2e/netns-workload-host.ts), which the test drives through a Unix socket because the
 * lab's networks are unreachable from the test's own namespace by design.
 */
import type { TokenRole } from '../../api/control-protocol.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join, resolve } from 'node:path';
import { FileStore } from '../../control/file-store.js';
import { TokenService } from '../../control/token-service.js';
import type { LabHost, LabProcess, NetnsLab } from '../helpers/netns.js';
import { MAIN } from './mesh-support.js';

const WORKLOAD_HOST_SCRIPT = resolve(import.meta.dirname, 'netns-workload-host.ts');

export interface CallResult {
  readonly status?: number;
  readonly body?: string;
  readonly headers?: Readonly<Record<string, string | string[] | undefined>>;
  readonly error?: string;
}

export interface LoadResult extends CallResult {
  readonly start: number;
  readonly end: number;
}

/** A workload host's apps, and calls made from inside its namespace. */
export interface WorkloadHost {
  readonly host: LabHost;
  readonly process: LabProcess;
  /** One HTTP request from this host (to its sidecar's upstream port, or its admin port). */
  call(url: string, method?: string, timeoutMs?: number): Promise<CallResult>;
  /** A bare TCP connect from this host: ok, or the error code. */
  connect(host: string, port: number): Promise<{ ok?: true; error?: string }>;
  stopApp(app: string): Promise<void>;
  startApp(app: string): Promise<void>;
  /** Load until stopLoad: `concurrency` sequential loops, or one request every `intervalMs` whatever the earlier ones do. */
  startLoad(url: string, shape: { concurrency: number } | { intervalMs: number }): Promise<void>;
  stopLoad(): Promise<LoadResult[]>;
}

function controlRequest(socketPath: string, path: string, body: unknown = {}): Promise<unknown> {
  return new Promise((resolvePromise, reject) => {
    const req = request({ socketPath, path, method: 'POST', timeout: 60_000 }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => {
        const value = JSON.parse(text) as unknown;
        if (res.statusCode !== 200) reject(new Error(`${path}: ${JSON.stringify(value)}`));
        else resolvePromise(value);
      });
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/** Starts the apps `NAME=PORT` on `host` (each on its 127.0.0.1:PORT) and the control socket in `dir`. */
export async function startWorkloadHost(lab: NetnsLab, host: LabHost, dir: string, apps: Readonly<Record<string, number>>): Promise<WorkloadHost> {
  const socketPath = join(dir, `${host.name}.sock`);
  const proc = lab.spawn(host, ['node', WORKLOAD_HOST_SCRIPT, socketPath, ...Object.entries(apps).map(([name, port]) => `${name}=${port}`)]);
  await proc.waitForOutput(/listening/, 20_000);
  const control = (path: string, body?: unknown): Promise<unknown> => controlRequest(socketPath, path, body);
  return {
    host,
    process: proc,
    call: async (url, method, timeoutMs) => (await control('/call', { url, method, timeoutMs })) as CallResult,
    connect: async (to, port) => (await control('/connect', { host: to, port })) as { ok?: true; error?: string },
    stopApp: async (app) => void (await control('/stop', { app })),
    startApp: async (app) => void (await control('/start', { app })),
    startLoad: async (url, shape) => void (await control('/load', { url, ...shape })),
    stopLoad: async () => ((await control('/load-stop')) as { results: LoadResult[] }).results,
  };
}

/** A join token file for `namespace/service` (`role` 'ingress' for the zone ingress's), made offline in the control plane's data dir (as `trellis token create --data-dir` does). */
export async function joinToken(controlDataDir: string, dir: string, service: string, namespace = 'default', role?: TokenRole): Promise<string> {
  const tokens = new TokenService(await FileStore.open(controlDataDir), 'trellis.local');
  const { token } = await tokens.create(service, namespace, 10 * 60_000, undefined, role);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${namespace}-${service}.token`);
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return file;
}

/** `trellis ARGS` on `host`, resolved once it prints its ready line. */
export async function startTrellis(lab: NetnsLab, host: LabHost, args: readonly string[], timeoutMs = 40_000): Promise<LabProcess> {
  const proc = lab.spawn(host, ['node', MAIN, ...args]);
  await proc.waitForOutput(/"event":"ready"/, timeoutMs);
  return proc;
}

/** Sums a counter of a Prometheus text page over the series whose labels include `labels`. */
export function counter(text: string, name: string, labels: Readonly<Record<string, string>>): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

/** Which app answered (`orders-east-a GET /x` → `orders-east-a`), or the failure. */
export function servedBy(result: CallResult): string {
  if (result.error !== undefined) return `error ${result.error}`;
  if (result.status !== 200) return `status ${String(result.status)}`;
  return (result.body ?? '').split(' ')[0] ?? '';
}
