#!/usr/bin/env node
/**
 * `npm run bench:gateway` (node dist/bench/gateway.js [--seconds N] [--connections N]): HTTPS clients
 * through the mesh gateway into a Trellis sidecar, beside nginx terminating TLS and proxying to the same
 * backend. Two client kinds, both wrk: keep-alive, and a new connection (TLS handshake) per request
 * (`Connection: close`). Reported: requests/s, p99, p99 added over plain HTTP straight to the backend,
 * and CPU per request of the proxying processes (for Trellis: the gateway, which holds its own sidecar,
 * plus the destination's sidecar; for nginx: its one process).
 *
 * Everything runs on loopback: a control plane, the backend's agent and the gateway are the built CLI
 * (`trellis control|agent|gateway run`), the backend is nginx (bench/backend.ts). Evidence, not a gate.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isEntryPoint } from '../common/entry-point.js';
import { FileStore } from '../control/file-store.js';
import { TokenService } from '../control/token-service.js';
import { startBackend, SMALL_PATH } from './backend.js';
import type { LoadSample } from './load-sample.js';
import { builtCliPath } from './paths.js';
import { readProcessStats } from './proc-stats.js';
import { ProcessGroup, waitForPorts, type ManagedProcess } from './processes.js';
import { freePorts, LOOPBACK } from './ports.js';
import { runWrk, writeWrkScript } from './wrk.js';

interface Row {
  readonly target: string;
  readonly client: 'keep-alive' | 'new-connection';
  readonly sample: LoadSample;
  readonly cpuUsPerRequest: number;
}

function option(argv: readonly string[], name: string, fallback: number): number {
  const i = argv.indexOf(`--${name}`);
  const v = i < 0 ? fallback : Number(argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name}: expected a positive integer`);
  return v;
}

function cpuOf(procs: readonly ManagedProcess[]): number {
  return procs.reduce((sum, p) => sum + readProcessStats(p.child.pid as number).cpuSeconds, 0);
}

async function untilOk(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await new Promise<number>((resolve) => {
      const req = request({ host: LOOPBACK, port, path: SMALL_PATH, rejectUnauthorized: false, agent: false, timeout: 2_000 }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => resolve(0));
      req.end();
    });
    if (status === 200) return;
    if (Date.now() > deadline) throw new Error(`nothing answers 200 on ${port} within ${timeoutMs} ms (last status ${status})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function nginxTls(dir: string, port: number, backendPort: number, cert: string, key: string): string {
  return `worker_processes 1;
daemon off;
master_process off;
pid ${join(dir, 'nginx-tls.pid')};
error_log ${join(dir, 'nginx-tls-error.log')} warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path ${join(dir, 'cb')};
  proxy_temp_path ${join(dir, 'px')};
  fastcgi_temp_path ${join(dir, 'fc')};
  uwsgi_temp_path ${join(dir, 'uw')};
  scgi_temp_path ${join(dir, 'sc')};
  keepalive_requests 100000000;
  upstream backend { server ${LOOPBACK}:${backendPort}; keepalive 64; }
  server {
    listen ${LOOPBACK}:${port} ssl backlog=4096;
    ssl_certificate ${cert};
    ssl_certificate_key ${key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`;
}

async function startMesh(dir: string, group: ProcessGroup, backendHttpPort: number): Promise<{ gatewayPort: number; procs: ManagedProcess[] }> {
  const cli = builtCliPath();
  const node = process.execPath;
  const [apiPort, gatewayPort] = (await freePorts(2)) as [number, number];
  const policyDir = join(dir, 'policy');
  mkdirSync(policyDir);
  writeFileSync(join(policyDir, 'backend.yaml'), `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: from-gateway, namespace: bench }
spec:
  destination: backend
  rules: [{ action: allow, from: ["trellis-gateway/gateway"] }]
`);
  const dataDir = join(dir, 'control');
  const control = group.start({ name: 'trellis control', command: node, args: [cli, 'control', 'run', '--data-dir', dataDir, '--policy', policyDir, '--listen', `${LOOPBACK}:${apiPort}`, '--admin', `${LOOPBACK}:0`, '--trust-domain', 'bench.trellis.local', '--log-level', 'warn'] });
  await waitForPorts(control, [apiPort], 30_000);
  const tokens = new TokenService(await FileStore.open(dataDir), 'bench.trellis.local');
  const token = async (service: string, namespace: string): Promise<string> => {
    const file = join(dir, `${service}.token`);
    writeFileSync(file, `${(await tokens.create(service, namespace, 3_600_000)).token}\n`, { mode: 0o600 });
    return file;
  };
  const api = `https://${LOOPBACK}:${apiPort}`;
  const bundle = join(dataDir, 'trust-bundle.pem');
  const agent = group.start({ name: 'backend agent', command: node, args: [cli, 'agent', 'run', '--control', api, '--ca-file', bundle, '--token-file', await token('backend', 'bench'), '--service', 'backend', '--namespace', 'bench', '--app-port', String(backendHttpPort), '--protocol', 'http', '--tunnel', `${LOOPBACK}:0`, '--admin', 'off', '--no-access-log', '--log-level', 'warn'] });
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=bench.example', '-keyout', join(dir, 'tls.key'), '-out', join(dir, 'tls.crt')], { stdio: 'ignore' });
  const config = join(dir, 'gateway.yaml');
  writeFileSync(config, `mesh: { control: "${api}", caFile: ${bundle}, tokenFile: ${await token('gateway', 'trellis-gateway')} }
admin: { enabled: false }
accessLog: false
listeners:
  - { name: tls, port: ${gatewayPort}, address: ${LOOPBACK}, protocol: https, tls: { certificates: [{ certificate: ${join(dir, 'tls.crt')}, key: ${join(dir, 'tls.key')} }] } }
routes:
  - { name: backend, destination: { service: backend, namespace: bench } }
`);
  const gateway = group.start({ name: 'trellis gateway', command: node, args: [cli, 'gateway', 'run', '--config', config, '--log-level', 'warn'] });
  await waitForPorts(gateway, [gatewayPort], 30_000);
  await untilOk(gatewayPort, 30_000);
  return { gatewayPort, procs: [gateway, agent] };
}

async function measure(group: ProcessGroup, script: string, target: string, url: string, procs: readonly ManagedProcess[], seconds: number, connections: number): Promise<Row[]> {
  const rows: Row[] = [];
  for (const client of ['keep-alive', 'new-connection'] as const) {
    const before = cpuOf(procs);
    const sample = await runWrk(group, { url, connections, threads: 2, seconds, script, ...(client === 'new-connection' ? { headers: ['Connection: close'] } : {}) });
    const cpu = cpuOf(procs) - before;
    rows.push({ target, client, sample, cpuUsPerRequest: sample.requests === 0 ? Number.NaN : (cpu * 1e6) / sample.requests });
  }
  return rows;
}

export async function benchGateway(argv: readonly string[]): Promise<string> {
  const seconds = option(argv, 'seconds', 10);
  const connections = option(argv, 'connections', 32);
  const dir = mkdtempSync(join(tmpdir(), 'trellis-bench-gw-'));
  const group = new ProcessGroup();
  try {
    const backend = await startBackend(join(dir, 'backend'), group);
    const script = await writeWrkScript(dir);
    const backendPort = backend.address.http.port;
    const direct = await runWrk(group, { url: `http://${LOOPBACK}:${backendPort}${SMALL_PATH}`, connections, threads: 2, seconds, script });
    const { gatewayPort, procs } = await startMesh(dir, group, backendPort);
    const rows = await measure(group, script, 'trellis gateway', `https://${LOOPBACK}:${gatewayPort}${SMALL_PATH}`, procs, seconds, connections);
    const [nginxPort] = (await freePorts(1)) as [number];
    const conf = join(dir, 'nginx-tls.conf');
    writeFileSync(conf, nginxTls(dir, nginxPort, backendPort, join(dir, 'tls.crt'), join(dir, 'tls.key')));
    const nginx = group.start({ name: 'nginx tls', command: 'nginx', args: ['-p', dir, '-c', conf, '-e', join(dir, 'nginx-tls-error.log')] });
    await waitForPorts(nginx, [nginxPort]);
    rows.push(...(await measure(group, script, 'nginx (TLS → backend)', `https://${LOOPBACK}:${nginxPort}${SMALL_PATH}`, [nginx], seconds, connections)));
    const lines = [
      `gateway benchmark: wrk, ${connections} connections, 2 threads, ${seconds} s per row; direct HTTP to the backend: ${Math.round(direct.requestsPerSecond)} req/s, p99 ${(direct.latencyUs.p99 / 1000).toFixed(2)} ms`,
      '',
      '| target | client | req/s | p99 ms | added p99 ms | CPU µs/request | errors | non-2xx |',
      '|---|---|---|---|---|---|---|---|',
      ...rows.map((r) => {
        const e = r.sample.errors;
        return `| ${r.target} | ${r.client} | ${Math.round(r.sample.requestsPerSecond)} | ${(r.sample.latencyUs.p99 / 1000).toFixed(2)} | ${((r.sample.latencyUs.p99 - direct.latencyUs.p99) / 1000).toFixed(2)} | ${Math.round(r.cpuUsPerRequest)} | ${e.connect + e.read + e.write + e.timeout} | ${r.sample.non2xx} |`;
      }),
    ];
    return `${lines.join('\n')}\n`;
  } finally {
    await group.stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (isEntryPoint(import.meta.url)) {
  benchGateway(process.argv.slice(2)).then(
    (text) => {
      process.stdout.write(text);
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`bench:gateway: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
}
