/**
 * `npm run bench:control`: how fast one endpoint change reaches 1,000 agents, and what the control plane
 * costs in memory while it serves them. The control plane runs as its own process (`trellis control
 * run`, as in production); this process plays 1,000 agents, each holding its own mTLS watch stream and
 * calling the same service, plus one instance of that service whose health flips back and forth.
 * Push latency is measured per agent from just before the health report is sent to the arrival of the
 * delta on that agent's stream (so it includes the report's own HTTPS round trip). Measures and
 * reports; it asserts nothing. The aim stated by the issue: p99 under 1 s.
 *
 *   node dist/bench/control.js [--agents 1000] [--changes 20] [--json]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { CONTROL_PATHS, type IssueResponse, type Registration } from '../api/control-protocol.js';
import { controlRequest, openControlStream, type ClientCertificate, type ControlEndpoint } from '../api/control-client.js';
import { createCsr, generateWorkloadKey } from '../ca/csr.js';
import { FileStore } from '../control/file-store.js';
import { TokenService } from '../control/token-service.js';
import { CONTROL_LIMITS } from '../control/limits.js';
import { builtCliPath, defaultResultsDir } from './paths.js';

const TRUST_DOMAIN = 'bench.local';

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.max(0, Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;
}

function rssOf(pid: number): { rssMiB: number; peakMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rssMiB: kib('VmRSS') / 1024, peakMiB: kib('VmHWM') / 1024 };
}

async function identity(endpoint: ControlEndpoint, dataDir: string, service: string): Promise<ClientCertificate> {
  const { token } = await new TokenService(await FileStore.open(dataDir), TRUST_DOMAIN).create(service, 'bench', 600_000);
  const key = await generateWorkloadKey();
  const issued = await controlRequest<IssueResponse>(endpoint, { method: 'POST', path: CONTROL_PATHS.issue, bearer: token, body: { csrPem: await createCsr(key, `spiffe://${TRUST_DOMAIN}/ns/bench/sa/${service}`) } });
  return { certChainPem: issued.certChainPem, keyPem: key.keyPem };
}

/** One simulated agent: its watch stream, and a callback per delta line that mentions the target. */
class SimulatedAgent {
  private partial = '';
  onDelta: ((at: number) => void) | undefined;

  constructor(readonly response: IncomingMessage) {
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => {
      const text = this.partial + chunk;
      let start = 0;
      for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
        const line = text.slice(start, nl);
        start = nl + 1;
        if (line.startsWith('{"type":"delta"') && this.onDelta !== undefined) this.onDelta(performance.now());
      }
      this.partial = text.slice(start);
    });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { agents: { type: 'string', default: '1000' }, changes: { type: 'string', default: '20' }, json: { type: 'boolean', default: false } } });
  const agentCount = Number(values.agents);
  const changes = Number(values.changes);
  if (!Number.isInteger(agentCount) || agentCount < 1 || agentCount > 10_000) throw new Error('--agents must be 1-10000');
  if (!Number.isInteger(changes) || changes < 1 || changes > 1_000) throw new Error('--changes must be 1-1000');

  const dir = mkdtempSync(join(tmpdir(), 'trellis-bench-control-'));
  const dataDir = join(dir, 'data');
  const control = spawn(process.execPath, [builtCliPath(), 'control', 'run', '--data-dir', dataDir, '--trust-domain', TRUST_DOMAIN, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const agents: SimulatedAgent[] = [];
  try {
    const ready = await new Promise<{ api: string; admin: string }>((resolve, reject) => {
      createInterface({ input: control.stdout }).on('line', (line) => line.startsWith('{"event":"ready"') && resolve(JSON.parse(line) as { api: string; admin: string }));
      control.once('exit', (code) => reject(new Error(`control plane exited with ${code}`)));
    });
    const endpoint: ControlEndpoint = { url: new URL(ready.api), trustBundlePem: readFileSync(join(dataDir, 'trust-bundle.pem'), 'utf8'), rootNamespace: 'trellis-system' };
    const idle = rssOf(control.pid as number);
    // The service whose endpoint changes, and the callers: the control plane admits at most
    // instancesPerWorkload instances per certificate and instancesPerService per service (control/limits.ts),
    // so each group of that many callers is its own service with its own certificate, as real agents are.
    const targetCert = await identity(endpoint, dataDir, 'target');
    const callerCerts = await callerIdentities(endpoint, dataDir, Math.ceil(agentCount / CONTROL_LIMITS.instancesPerWorkload));
    const target = await openControlStream(endpoint, { method: 'POST', path: CONTROL_PATHS.watch, body: { registration: registration('target-0', 20000, []) }, clientCert: targetCert });
    target.resume();
    const connectSeconds = await connectAgents(endpoint, (i) => callerCerts[Math.floor(i / CONTROL_LIMITS.instancesPerWorkload)] as ClientCertificate, agentCount, agents);
    await new Promise((r) => setTimeout(r, 1_000));
    const connected = rssOf(control.pid as number);
    const { latencies, missing } = await flipTarget(endpoint, targetCert, agents, changes);
    const after = rssOf(control.pid as number);
    const result = {
      agents: agentCount,
      changes,
      deliveries: latencies.length,
      missing,
      pushLatencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) ?? Number.NaN },
      connectSeconds,
      controlPlaneMemoryMiB: { idle: idle.rssMiB, with1000Agents: connected.rssMiB, afterChanges: after.rssMiB, peak: after.peakMiB },
      perAgentKiB: ((connected.rssMiB - idle.rssMiB) * 1024) / agentCount,
    };
    const resultsFile = saveResult(result);
    process.stdout.write(values.json === true ? `${JSON.stringify(result)}\n` : summary(result, resultsFile));
  } finally {
    for (const agent of agents) agent.response.destroy();
    control.kill('SIGTERM');
    await new Promise((r) => (control.exitCode !== null ? r(undefined) : control.once('exit', r)));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One certificate per caller service `caller-G`, issued 10 at a time. */
async function callerIdentities(endpoint: ControlEndpoint, dataDir: string, count: number): Promise<ClientCertificate[]> {
  const certs: ClientCertificate[] = [];
  for (let g = 0; g < count; g += 10) {
    certs.push(...(await Promise.all(Array.from({ length: Math.min(10, count - g) }, (_, k) => identity(endpoint, dataDir, `caller-${g + k}`)))));
  }
  return certs;
}

function registration(instanceId: string, port: number, upstreams: Registration['upstreams']): Registration {
  return { instanceId, address: '10.1.0.1', tunnelPort: port, ports: [{ port: 8080, protocol: 'http' }], healthy: true, upstreams, agentVersion: 'bench' };
}

/** Opens the agents' watch streams, 50 at a time; returns how long it took (seconds). */
async function connectAgents(endpoint: ControlEndpoint, certOf: (agent: number) => ClientCertificate, agentCount: number, agents: SimulatedAgent[]): Promise<number> {
  const started = performance.now();
  const batch = 50;
  for (let i = 0; i < agentCount; i += batch) {
    const opened = await Promise.all(Array.from({ length: Math.min(batch, agentCount - i) }, (_, j) =>
      openControlStream(endpoint, { method: 'POST', path: CONTROL_PATHS.watch, body: { registration: registration(`caller-${i + j}`, 30000 + ((i + j) % 30000), [{ service: 'target', namespace: 'bench' }]) }, clientCert: certOf(i + j), timeoutMs: 30_000 })));
    for (const res of opened) {
      if (res.statusCode !== 200) throw new Error(`watch refused with ${res.statusCode}`);
      agents.push(new SimulatedAgent(res));
    }
  }
  return (performance.now() - started) / 1000;
}

/** Flips the target's health: each flip is one endpoint change that all agents must receive. Latencies sorted. */
async function flipTarget(endpoint: ControlEndpoint, targetCert: Awaited<ReturnType<typeof identity>>, agents: readonly SimulatedAgent[], changes: number): Promise<{ latencies: number[]; missing: number }> {
  const latencies: number[] = [];
  let missing = 0;
  for (let c = 0; c < changes; c++) {
    const arrivals: number[] = [];
    const done = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 10_000);
      for (const agent of agents) {
        agent.onDelta = (at) => {
          agent.onDelta = undefined;
          arrivals.push(at);
          if (arrivals.length === agents.length) {
            clearTimeout(timer);
            resolve();
          }
        };
      }
    });
    const sent = performance.now();
    await controlRequest(endpoint, { method: 'PUT', path: CONTROL_PATHS.endpoint('target-0'), body: { healthy: c % 2 === 1 }, clientCert: targetCert });
    await done;
    missing += agents.length - arrivals.length;
    for (const at of arrivals) latencies.push(at - sent);
    await new Promise((r) => setTimeout(r, 200));
  }
  latencies.sort((a, b) => a - b);
  return { latencies, missing };
}

interface ControlBenchResult {
  readonly agents: number;
  readonly changes: number;
  readonly deliveries: number;
  readonly missing: number;
  readonly pushLatencyMs: { readonly p50: number; readonly p99: number; readonly max: number };
  readonly connectSeconds: number;
  readonly controlPlaneMemoryMiB: { readonly idle: number; readonly with1000Agents: number; readonly afterChanges: number; readonly peak: number };
  readonly perAgentKiB: number;
}

function saveResult(result: ControlBenchResult): string {
  const resultsDir = defaultResultsDir();
  mkdirSync(resultsDir, { recursive: true });
  const resultsFile = join(resultsDir, `control-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(resultsFile, `${JSON.stringify(result, null, 2)}\n`);
  return resultsFile;
}

function summary(result: ControlBenchResult, resultsFile: string): string {
  const f = (n: number): string => n.toFixed(1);
  const memory = result.controlPlaneMemoryMiB;
  return `control plane push to ${result.agents} agents, ${result.changes} endpoint changes (${result.deliveries} deliveries, ${result.missing} missing)
  push latency   p50 ${f(result.pushLatencyMs.p50)} ms   p99 ${f(result.pushLatencyMs.p99)} ms   max ${f(result.pushLatencyMs.max)} ms   (aim: p99 < 1000 ms)
  connecting     ${result.agents} mTLS watch streams in ${result.connectSeconds.toFixed(2)} s
  memory (RSS)   idle ${f(memory.idle)} MiB   with agents ${f(memory.with1000Agents)} MiB   after ${f(memory.afterChanges)} MiB   peak ${f(memory.peak)} MiB   (~${f(result.perAgentKiB)} KiB per agent)
  results        ${resultsFile}
`;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:control failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
