/**
 * Runs the benchmark: starts the backend and every selected pair once, then for each round runs every
 * scenario through every pair, rotating the pair order each round so no pair always goes first (or
 * always runs right after the hungriest one). Each measured run is preceded by an unrecorded warm-up,
 * and each sidecar's CPU seconds and peak RSS are read around it. Whatever happens, every process is
 * stopped and the temporary directory removed.
 */
import { chmod, mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBackend } from './backend.js';
import { runH2load } from './h2load.js';
import { runH2loadMux } from './h2load-mux.js';
import { runGrpcStream } from './grpc-stream-run.js';
import { totalErrors, type LoadSample } from './load-sample.js';
import type { BenchOptions } from './options.js';
import { PORT_KINDS, servedPortKinds, type PairContext, type PairFactory, type PairName, type PortKind, type RunningPair } from './pair.js';
import { writeBenchPki } from './pki.js';
import { readProcessStats, resetPeakRss } from './proc-stats.js';
import { ProcessGroup } from './processes.js';
import { scenarioById, type Scenario } from './scenarios.js';
import { runWrk, writeWrkScript } from './wrk.js';
import { describeMachine, type MachineInfo } from './machine.js';

export interface SidecarSample {
  readonly role: string;
  readonly pid: number;
  readonly cpuSeconds: number;
  /** VmHWM during this run (since the start of the process where peakReset is false). */
  readonly peakRssBytes: number;
  readonly peakReset: boolean;
  readonly rssAfterBytes: number;
  /** Anonymous part of rssAfterBytes (RssAnon); absent where the kernel does not report it. */
  readonly rssAnonAfterBytes?: number;
}

export interface RunSample {
  readonly round: number;
  readonly scenario: string;
  readonly pair: PairName;
  readonly startedAt: string;
  readonly load: LoadSample;
  readonly sidecars: readonly SidecarSample[];
  /** Anything that makes this sample suspect (e.g. responses shorter than the body served). */
  readonly warnings: readonly string[];
}

export interface FinalSidecarState {
  readonly pair: PairName;
  readonly role: string;
  readonly rssBytes: number;
  /** Peak since the last reset, i.e. during the last run through this pair. */
  readonly peakRssBytes: number;
  /** rssBytes split into anonymous and file-backed pages (see ProcessStats). */
  readonly rssAnonBytes?: number;
  readonly rssFileBytes?: number;
}

export interface BenchRun {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly options: BenchOptions;
  readonly machine: MachineInfo;
  /** `ports`: the port kinds the pair serves (absent in older results: both); scenarios through the others were not run. */
  readonly pairs: readonly { readonly name: PairName; readonly description: string; readonly ports?: readonly PortKind[] }[];
  readonly samples: readonly RunSample[];
  readonly finalSidecars: readonly FinalSidecarState[];
}

export interface RunnerHooks {
  /** Progress lines for a human watching. */
  readonly progress: (line: string) => void;
  readonly signal?: AbortSignal;
  /** Absolute path of dist/cli/main.js, for the Trellis pair. */
  readonly trellisCli: string;
  /** `--compare PATH`: the CLI the `trellis-b` pair runs. */
  readonly compareCli?: string;
}

interface Stopwatch {
  readonly cpu: number;
  readonly peakReset: boolean;
}

function runLoad(group: ProcessGroup, scenario: Scenario, pair: RunningPair, seconds: number, dir: string, wrkScript: string): Promise<LoadSample> {
  const entry = pair.entry[scenario.port];
  if (entry === undefined) throw new Error(`${pair.name} serves no ${scenario.port} port (scenario ${scenario.id})`);
  const url = `http://${entry.host}:${entry.port}${scenario.path}`;
  const load = scenario.load;
  if (load.tool === 'wrk') {
    return runWrk(group, {
      url,
      connections: load.connections,
      // One thread: wrk alone does far more than any pair here, and a second thread would take the
      // core the sidecars need.
      threads: 1,
      seconds,
      headers: load.connectionClose ? ['Connection: close'] : [],
      script: wrkScript,
    });
  }
  if (load.tool === 'grpc-stream') {
    return runGrpcStream(group, { target: `${entry.host}:${entry.port}`, mode: load.mode, connections: load.connections, streams: load.streams, seconds });
  }
  if (load.tool === 'h2load-mux') {
    return runH2loadMux(group, { url, clients: load.clients, streams: load.streams, seconds, logFile: join(dir, 'h2load.log'), grpc: load.grpc, dataFile: join(dir, 'grpc-request.bin') });
  }
  return runH2load(group, { url, clients: load.clients, ratePerClient: load.ratePerClient, seconds, logFile: join(dir, 'h2load.log') });
}

/** A fast run that did not deliver what was asked is not a win: say so next to its numbers. */
export function checkSample(scenario: Scenario, load: LoadSample): string[] {
  const warnings: string[] = [...(load.notes ?? [])];
  if (load.requests === 0) warnings.push('no response completed');
  if (scenario.bodyBytes !== undefined && load.requests > 0 && load.bytes / load.requests < scenario.bodyBytes) {
    warnings.push(`responses averaged ${Math.round(load.bytes / load.requests)} bytes, less than the ${scenario.bodyBytes}-byte body`);
  }
  return warnings;
}

/** A pair that serves no port of a scenario's kind (Caddy: no tcp port) skips it; the report says n/a. */
function serves(pair: RunningPair, scenario: Scenario): boolean {
  return pair.entry[scenario.port] !== undefined;
}

/** One measured run of one scenario through one pair (after its warm-up), with its sidecars' CPU and memory. */
async function measureOne(run: { group: ProcessGroup; options: BenchOptions; dir: string; wrkScript: string }, scenario: Scenario, pair: RunningPair, round: number): Promise<RunSample> {
  const { group, options, dir, wrkScript } = run;
  if (options.warmupSeconds > 0) await runLoad(group, scenario, pair, options.warmupSeconds, dir, wrkScript);
  pair.assertAlive();
  const before = new Map<number, Stopwatch>();
  for (const s of pair.sidecars) before.set(s.pid, { peakReset: resetPeakRss(s.pid), cpu: readProcessStats(s.pid).cpuSeconds });
  const at = new Date().toISOString();
  const load = await runLoad(group, scenario, pair, options.seconds, dir, wrkScript);
  pair.assertAlive();
  const sidecars = pair.sidecars.map((s): SidecarSample => {
    const after = readProcessStats(s.pid);
    const start = before.get(s.pid) as Stopwatch;
    return { role: s.role, pid: s.pid, cpuSeconds: after.cpuSeconds - start.cpu, peakRssBytes: after.peakRssBytes, peakReset: start.peakReset, rssAfterBytes: after.rssBytes, ...(after.rssAnonBytes === undefined ? {} : { rssAnonAfterBytes: after.rssAnonBytes }) };
  });
  return { round, scenario: scenario.id, pair: pair.name, startedAt: at, load, sidecars, warnings: checkSample(scenario, load) };
}

function finalSidecarStates(running: readonly RunningPair[]): FinalSidecarState[] {
  const out: FinalSidecarState[] = [];
  for (const pair of running) {
    for (const s of pair.sidecars) {
      const stats = readProcessStats(s.pid);
      out.push({ pair: pair.name, role: s.role, rssBytes: stats.rssBytes, peakRssBytes: stats.peakRssBytes, rssAnonBytes: stats.rssAnonBytes, rssFileBytes: stats.rssFileBytes });
    }
  }
  return out;
}

export async function runBench(options: BenchOptions, factories: readonly PairFactory[], hooks: RunnerHooks): Promise<BenchRun> {
  const startedAt = new Date().toISOString();
  const machineBefore = await describeMachine();
  const dir = await mkdtemp(join(tmpdir(), 'trellis-bench-'));
  // nginx workers run unprivileged when started as root and must reach the content below; the keys
  // live in their own 0700 directory.
  await chmod(dir, 0o755);
  const group = new ProcessGroup();
  const running: RunningPair[] = [];
  const onAbort = (): void => void group.stopAll();
  hooks.signal?.addEventListener('abort', onAbort);
  const checkAborted = (): void => {
    if (hooks.signal?.aborted === true) throw new Error('benchmark interrupted');
  };
  try {
    const scenarios = options.scenarios.map((id) => {
      const s = scenarioById(id);
      if (s === undefined) throw new Error(`unknown scenario ${id}`);
      return s;
    });
    hooks.progress(`work directory ${dir}`);
    const pki = await writeBenchPki(join(dir, 'pki'));
    const backend = await startBackend(join(dir, 'backend'), group);
    hooks.progress(`backend: nginx on ${backend.address.tcp.host} ports ${backend.address.tcp.port} (tcp), ${backend.address.http.port} (http) and ${backend.address.http2.port} (http2); grpc-js on ${backend.address.grpc.port} (grpc)`);
    const wrkScript = await writeWrkScript(dir);
    for (const factory of factories) {
      checkAborted();
      const pairDir = join(dir, factory.name);
      await mkdir(pairDir, { recursive: true });
      const context: PairContext = { dir: pairDir, backend: backend.address, pki, processes: group, trellisCli: hooks.trellisCli, ...(hooks.compareCli === undefined ? {} : { compareCli: hooks.compareCli }) };
      const pair = await factory.start(context);
      running.push(pair);
      const ports = PORT_KINDS.map((kind) => `${kind} ${pair.entry[kind]?.port ?? 'n/a'}`).join(', ');
      hooks.progress(`${pair.name}: ${ports}${pair.sidecars.map((s) => `, ${s.role} pid ${s.pid}`).join('')}`);
    }

    const samples: RunSample[] = [];
    const total = options.rounds * scenarios.reduce((n, scenario) => n + running.filter((p) => serves(p, scenario)).length, 0);
    for (let round = 1; round <= options.rounds; round++) {
      for (const scenario of scenarios) {
        const offset = (round - 1) % running.length;
        // Each round starts with another pair, so no pair always runs first (or last) on a warming machine.
        const order = [...running.slice(offset), ...running.slice(0, offset)];
        for (const pair of order) {
          checkAborted();
          if (!serves(pair, scenario)) continue;
          const sample = await measureOne({ group, options, dir, wrkScript }, scenario, pair, round);
          for (const w of sample.warnings) hooks.progress(`WARNING ${scenario.id} ${pair.name}: ${w}`);
          samples.push(sample);
          const load = sample.load;
          hooks.progress(
            `[${samples.length}/${total}] round ${round} ${scenario.id} ${pair.name}: ${load.requestsPerSecond.toFixed(0)} req/s, ` +
              `p99 ${(load.latencyUs.p99 / 1000).toFixed(2)} ms, errors ${totalErrors(load.errors)}, non-2xx ${load.non2xx}`,
          );
        }
      }
    }
    const finalSidecars = finalSidecarStates(running);
    const machineAfter = await describeMachine();
    return {
      startedAt,
      finishedAt: new Date().toISOString(),
      options,
      machine: { ...machineBefore, loadAverageAfter: machineAfter.loadAverageBefore },
      pairs: running.map((p) => ({ name: p.name, description: p.description, ports: servedPortKinds(p) })),
      samples,
      finalSidecars,
    };
  } finally {
    hooks.signal?.removeEventListener('abort', onAbort);
    await Promise.allSettled(running.map((p) => p.stop()));
    await group.stopAll();
    await rm(dir, { recursive: true, force: true });
  }
}
