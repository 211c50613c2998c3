/**
 * `npm run bench:global`: the global control plane under 10 zones × 1,000 exported services (5 endpoints
 * each). The global runs as its own process (`trellis control run --mode global`, file store); this
 * process plays the zones, each on its own mTLS HTTP/2 sync stream (global-zone-sim.ts). Measures and
 * asserts nothing:
 *
 * - propagation: one health change at a time in a random zone, from just before its delta is written to
 *   the moment the last of the other zones has applied it (p50, p99);
 * - bytes on the wire per change (up and down, all zones);
 * - a zone's reconnect: resuming (same epoch and catalogue: deltas only) and full (a zone that lost its
 *   state: its 1,000 services up and the 9,000 others down), from dialling to holding everything;
 * - the global's memory (RSS, peak) once everything is synced.
 *
 * Targets from the issue: p99 under 300 ms, full reconnect under 2 s, memory under 300 MB.
 *
 *   node dist/bench/global.js [--zones 10] [--services 1000] [--changes 200] [--json]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { GlobalFileStore } from '../control/global/global-store.js';
import { ZoneTokenService } from '../control/global/zone-tokens.js';
import { obtainZoneCredentials, type GlobalEndpoint } from '../control/zone-sync/global-client.js';
import { SimulatedZone } from './global-zone-sim.js';
import { builtCliPath, defaultResultsDir } from './paths.js';
import { readProcessStats } from './proc-stats.js';
import { isEntryPoint } from '../common/entry-point.js';

const TRUST_DOMAIN = 'bench.local';

const mib = (bytes: number): number => +(bytes / 1024 / 1024).toFixed(1);

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.max(0, Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;
}

function until(check: () => boolean, what: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      if (check()) return resolve();
      if (Date.now() > deadline) return reject(new Error(`${what}: not within ${timeoutMs} ms`));
      setTimeout(poll, 2);
    };
    poll();
  });
}

async function startGlobal(dataDir: string): Promise<{ pid: number; api: string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [builtCliPath(), 'control', 'run', '--mode', 'global', '--data-dir', dataDir, '--trust-domain', TRUST_DOMAIN, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--zone-lease', '10m', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const ready = await new Promise<Record<string, string>>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.startsWith('{"event":"ready"')) resolve(JSON.parse(line) as Record<string, string>);
    });
    child.once('exit', (code) => reject(new Error(`the global control plane exited with ${code}`)));
  });
  return {
    pid: child.pid as number,
    api: ready.api as string,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
    },
  };
}

/** One change at a time: the time until the last other zone applied it (sorted), and bytes on the wire per change. */
async function measureChanges(zones: readonly SimulatedZone[], serviceCount: number, changeCount: number): Promise<{ latencies: number[]; bytesPerChange: number }> {
  const zoneCount = zones.length;
  const latencies: number[] = [];
  const bytesBefore = zones.reduce((n, z) => n + z.bytesIn + z.bytesOut, 0);
  for (let c = 0; c < changeCount; c++) {
    const source = zones[c % zoneCount] as SimulatedZone;
    const i = Math.floor(Math.random() * serviceCount);
    const current = source.services.get(`${source.name}/bench/svc-${i}`) as { localities: { healthy: number }[] };
    const [key, record] = SimulatedZone.service(source.name, i, current.localities[0]?.healthy === 5 ? 4 : 5);
    source.services.set(key, record);
    let waiting = zoneCount - 1;
    let last = 0;
    for (const z of zones) {
      z.onApplied = z === source ? undefined : (at, keys) => {
        if (keys.includes(key)) {
          waiting--;
          last = at;
        }
      };
    }
    const t0 = performance.now();
    source.flush();
    await until(() => waiting === 0, `change ${c}`, 30_000);
    latencies.push(last - t0);
  }
  const bytesPerChange = (zones.reduce((n, z) => n + z.bytesIn + z.bytesOut, 0) - bytesBefore) / latencies.length;
  latencies.sort((a, b) => a - b);
  return { latencies, bytesPerChange };
}

/** Reconnects of one zone: resuming (deltas) and full (a zone that lost its state). */
async function measureReconnects(probe: SimulatedZone, others: number): Promise<{ resumeMs: number; fullMs: number }> {
  probe.disconnect();
  let t = performance.now();
  await probe.connect();
  const resumeMs = performance.now() - t;
  probe.disconnect();
  t = performance.now();
  await probe.connect(true);
  await until(() => probe.replicas.service.size === others, 'full resync');
  return { resumeMs, fullMs: performance.now() - t };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { zones: { type: 'string', default: '10' }, services: { type: 'string', default: '1000' }, changes: { type: 'string', default: '200' }, json: { type: 'boolean', default: false } } });
  const zoneCount = Number(values.zones);
  const serviceCount = Number(values.services);
  const changeCount = Number(values.changes);
  const dir = mkdtempSync(join(tmpdir(), 'trellis-bench-global-'));
  const global = await startGlobal(join(dir, 'global'));
  const zones: SimulatedZone[] = [];
  try {
    const endpoint: GlobalEndpoint = { url: new URL(global.api), trustDomain: TRUST_DOMAIN, rootNamespace: 'trellis-system', bundlePem: readFileSync(join(dir, 'global', 'trust-bundle.pem'), 'utf8') };
    const tokens = new ZoneTokenService(await GlobalFileStore.open(join(dir, 'global')), TRUST_DOMAIN);
    for (let z = 0; z < zoneCount; z++) {
      const name = `zone-${z}`;
      const { token } = await tokens.create(name, 600_000);
      const zone = new SimulatedZone(name, endpoint, await obtainZoneCredentials(endpoint, join(dir, name), name, { token }));
      for (let i = 0; i < serviceCount; i++) zone.services.set(...SimulatedZone.service(name, i, 5));
      zones.push(zone);
    }
    const started = performance.now();
    await Promise.all(zones.map((z) => z.connect()));
    const others = (serviceCount * (zoneCount - 1));
    await until(() => zones.every((z) => z.replicas.service.size === others), 'initial sync');
    const initialSyncMs = performance.now() - started;
    const memorySynced = readProcessStats(global.pid);

    const { latencies, bytesPerChange } = await measureChanges(zones, serviceCount, changeCount);
    const { resumeMs, fullMs } = await measureReconnects(zones[0] as SimulatedZone, others);
    const memory = readProcessStats(global.pid);

    const result = {
      zones: zoneCount, servicesPerZone: serviceCount, endpointsPerService: 5, changes: latencies.length,
      initialSyncMs: Math.round(initialSyncMs),
      propagationMs: { p50: +percentile(latencies, 50).toFixed(2), p99: +percentile(latencies, 99).toFixed(2), max: +(latencies[latencies.length - 1] ?? 0).toFixed(2) },
      bytesPerChange: Math.round(bytesPerChange),
      reconnectMs: { resume: Math.round(resumeMs), full: Math.round(fullMs) },
      globalMemoryMiB: { rssSynced: mib(memorySynced.rssBytes), rssEnd: mib(memory.rssBytes), peak: mib(memory.peakRssBytes) },
      targets: { p99Ms: 300, fullReconnectMs: 2_000, memoryMiB: 300 },
    };
    const resultsDir = defaultResultsDir();
    mkdirSync(resultsDir, { recursive: true });
    const resultsFile = join(resultsDir, `global-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(resultsFile, `${JSON.stringify(result, null, 2)}\n`);
    if (values.json === true) process.stdout.write(`${JSON.stringify(result)}\n`);
    else {
      process.stdout.write(`bench:global  ${zoneCount} zones × ${serviceCount} services × 5 endpoints, ${latencies.length} changes
  initial sync            ${result.initialSyncMs} ms (every zone holds the ${others} others' services)
  change → all zones      p50 ${result.propagationMs.p50} ms   p99 ${result.propagationMs.p99} ms   max ${result.propagationMs.max} ms   (target p99 < 300 ms)
  bytes on the wire       ${result.bytesPerChange} per change (up + down, all zones)
  zone reconnect          resume ${result.reconnectMs.resume} ms   full ${result.reconnectMs.full} ms   (target full < 2,000 ms)
  global memory           RSS ${result.globalMemoryMiB.rssSynced} MiB synced, ${result.globalMemoryMiB.rssEnd} MiB at the end, peak ${result.globalMemoryMiB.peak} MiB   (target < 300 MB)
  results                 ${resultsFile}
`);
    }
  } finally {
    for (const z of zones) z.disconnect();
    await global.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (isEntryPoint(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench:global failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
}
