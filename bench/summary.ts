/**
 * From raw samples to what the report states: the median of each figure across rounds for every
 * (scenario, pair), errors summed (one failed request in any round counts), the largest peak RSS, and the
 * targets of the issue checked and marked, never enforced (`TARGETS`): Trellis's throughput as a share of the
 * HAProxy pair's, added p99 at the fixed rate as a multiple of HAProxy's, anonymous memory per sidecar after
 * each run (file-backed pages of the runtime are shared by every sidecar on a node, so they are not counted),
 * and no errors. The targets compare
 * Trellis with the HAProxy pair only; the nginx and Caddy pairs are in the table, not in the targets. A
 * pair that serves no port of a scenario's kind (the Caddy pair has no tcp port) gets no cell for it but
 * an `unserved` entry, which the report prints as "n/a".
 */
import { median, totalErrors } from './load-sample.js';
import { PORT_KINDS, type PairName, type PortKind } from './pair.js';
import type { BenchRun, RunSample } from './runner.js';
import { scenarioById } from './scenarios.js';

const MIB = 1024 * 1024;

/** The issue's targets (runtime and data-plane efficiency), in one place. */
export const TARGETS = Object.freeze({
  /** Throughput as a share of the HAProxy pair's, per throughput scenario. close-tcp keeps the earlier bar. */
  throughputShare: Object.freeze<Record<string, number>>({
    'keepalive-tcp': 0.9,
    'close-tcp': 1.0,
    'keepalive-http': 0.6,
    'close-http': 0.6,
    '1mib-tcp': 0.7,
    '1mib-http': 0.7,
  }),
  /** Added p99 at the fixed rate, as a multiple of the HAProxy pair's. */
  fixedRateP99Factor: 1.5,
  /** Anonymous memory per sidecar after a run of small requests, and after 1 MiB transfers. */
  anonAfterSmallBytes: 32 * MIB,
  anonAfterLargeBytes: 48 * MIB,
});

export interface SidecarSummary {
  readonly role: string;
  /** Largest VmHWM seen in any run of this scenario. */
  readonly peakRssBytes: number;
  /** Largest anonymous RSS right after a run of this scenario (undefined: not reported). */
  readonly anonAfterBytes: number | undefined;
  readonly cpuSeconds: number;
  /** CPU microseconds per completed request: comparable across pairs that ran at different rates. */
  readonly cpuMicrosPerRequest: number;
}

export interface CellSummary {
  readonly scenario: string;
  readonly pair: PairName;
  readonly runs: number;
  readonly requestsPerSecond: number;
  readonly mebibytesPerSecond: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  /** p99 minus the no-proxy p99 of the same scenario (undefined without a no-proxy run). */
  readonly addedP99Us: number | undefined;
  readonly errors: number;
  readonly non2xx: number;
  /** Runs with a warning (no response at all, short bodies): their speed proves nothing. */
  readonly suspectRuns: number;
  readonly sidecars: readonly SidecarSummary[];
}

export type Mark = 'met' | 'MISSED' | 'n/a';

export interface TargetCheck {
  readonly target: string;
  readonly scenario: string | undefined;
  readonly trellis: string;
  readonly reference: string;
  readonly mark: Mark;
}

/** A (scenario, pair) that was not run because the pair serves no port of the scenario's kind. */
export interface UnservedCell {
  readonly scenario: string;
  readonly pair: PairName;
  readonly port: PortKind;
}

export interface BenchSummary {
  readonly cells: readonly CellSummary[];
  readonly unserved: readonly UnservedCell[];
  readonly targets: readonly TargetCheck[];
}

/** The port kinds a pair of the run served (results written before pairs recorded them: all). */
export function pairPorts(run: BenchRun, pair: PairName): readonly PortKind[] {
  return run.pairs.find((p) => p.name === pair)?.ports ?? PORT_KINDS;
}

/** The scenario's port kind when `pair` does not serve it, else undefined. */
function unservedPort(run: BenchRun, scenario: string, pair: PairName): PortKind | undefined {
  const port = scenarioById(scenario)?.port;
  return port !== undefined && run.pairs.some((p) => p.name === pair) && !pairPorts(run, pair).includes(port) ? port : undefined;
}

function summarizeCell(scenario: string, pair: PairName, samples: readonly RunSample[], directP99: number | undefined): CellSummary {
  const p99Us = median(samples.map((s) => s.load.latencyUs.p99));
  const roles = [...new Set(samples.flatMap((s) => s.sidecars.map((c) => c.role)))];
  return {
    scenario,
    pair,
    runs: samples.length,
    requestsPerSecond: median(samples.map((s) => s.load.requestsPerSecond)),
    mebibytesPerSecond: median(samples.map((s) => s.load.mebibytesPerSecond)),
    p50Us: median(samples.map((s) => s.load.latencyUs.p50)),
    p99Us,
    p999Us: median(samples.map((s) => s.load.latencyUs.p999)),
    addedP99Us: directP99 === undefined || pair === 'direct' ? undefined : p99Us - directP99,
    errors: samples.reduce((n, s) => n + totalErrors(s.load.errors), 0),
    non2xx: samples.reduce((n, s) => n + s.load.non2xx, 0),
    suspectRuns: samples.filter((s) => s.warnings.length > 0).length,
    sidecars: roles.map((role) => {
      const mine = samples.flatMap((s) => s.sidecars.filter((c) => c.role === role).map((c) => ({ c, requests: s.load.requests })));
      return {
        role,
        peakRssBytes: Math.max(...mine.map((m) => m.c.peakRssBytes)),
        anonAfterBytes: mine.every((m) => m.c.rssAnonAfterBytes !== undefined) ? Math.max(...mine.map((m) => m.c.rssAnonAfterBytes as number)) : undefined,
        cpuSeconds: median(mine.map((m) => m.c.cpuSeconds)),
        cpuMicrosPerRequest: median(mine.map((m) => (m.requests > 0 ? (m.c.cpuSeconds * 1e6) / m.requests : Number.NaN))),
      };
    }),
  };
}

const fmtRate = (v: number): string => (Number.isFinite(v) ? v.toFixed(0) : '—');
const fmtMs = (us: number | undefined): string => (us !== undefined && Number.isFinite(us) ? `${(us / 1000).toFixed(3)} ms` : '—');
const fmtMiB = (bytes: number): string => `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;

/** A fast run with errors is not a win: speed and latency count only when every request succeeded. */
function clean(c: CellSummary): boolean {
  return c.errors === 0 && c.non2xx === 0 && c.suspectRuns === 0;
}

function describeFailures(c: CellSummary): string {
  return `${c.errors} errors, ${c.non2xx} non-2xx${c.suspectRuns > 0 ? `, ${c.suspectRuns} suspect run(s)` : ''}`;
}

function checkTargets(cells: readonly CellSummary[], run: BenchRun): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const cell = (scenario: string, pair: PairName): CellSummary | undefined => cells.find((c) => c.scenario === scenario && c.pair === pair);
  for (const scenario of run.options.scenarios) {
    const trellis = cell(scenario, 'trellis');
    const haproxy = cell(scenario, 'haproxy');
    // Why a side has no figure: not in the run, or in it without a port of this kind.
    const absent = (pair: PairName): string => {
      const port = unservedPort(run, scenario, pair);
      return port === undefined ? 'not run' : `not applicable (no ${port} port)`;
    };
    const info = scenarioById(scenario);
    const share = TARGETS.throughputShare[scenario];
    if (info?.fixedRate !== true && share !== undefined) {
      checks.push({
        target: `throughput ≥ ${share}× HAProxy pair`,
        scenario,
        trellis: trellis === undefined ? absent('trellis') : `${fmtRate(trellis.requestsPerSecond)} req/s${haproxy === undefined ? '' : ` (${(trellis.requestsPerSecond / haproxy.requestsPerSecond).toFixed(2)}×)`}`,
        reference: haproxy === undefined ? absent('haproxy') : `${fmtRate(haproxy.requestsPerSecond)} req/s`,
        mark: trellis === undefined || haproxy === undefined ? 'n/a' : trellis.requestsPerSecond >= share * haproxy.requestsPerSecond && clean(trellis) ? 'met' : 'MISSED',
      });
    }
    if (info?.fixedRate === true) {
      // The no-proxy baseline is the same for both pairs; without one, p99 itself is compared.
      const latency = (c: CellSummary): number => c.addedP99Us ?? c.p99Us;
      const factor = TARGETS.fixedRateP99Factor;
      checks.push({
        target: `${cell(scenario, 'direct') === undefined ? 'p99' : 'added p99'} ≤ ${factor}× HAProxy pair`,
        scenario,
        trellis: trellis === undefined ? absent('trellis') : fmtMs(latency(trellis)),
        reference: haproxy === undefined ? absent('haproxy') : fmtMs(latency(haproxy)),
        // A Trellis pair with no latency at all completed nothing: that misses, it is not "not applicable".
        mark: trellis === undefined || haproxy === undefined ? 'n/a' : Number.isFinite(trellis.p99Us) && latency(trellis) <= factor * Math.max(latency(haproxy), 0) && clean(trellis) ? 'met' : 'MISSED',
      });
    }
    if (trellis !== undefined) {
      checks.push({
        target: 'no errors, no non-2xx, no suspect run',
        scenario,
        trellis: describeFailures(trellis),
        reference: haproxy === undefined ? absent('haproxy') : describeFailures(haproxy),
        mark: clean(trellis) ? 'met' : 'MISSED',
      });
      const bound = info?.bodyBytes !== undefined ? TARGETS.anonAfterLargeBytes : TARGETS.anonAfterSmallBytes;
      for (const s of trellis.sidecars) {
        const ref = haproxy?.sidecars.find((h) => h.role === s.role);
        checks.push({
          target: `anonymous memory after the run ≤ ${bound / MIB} MiB (${s.role} sidecar)`,
          scenario,
          trellis: s.anonAfterBytes === undefined ? 'not reported' : fmtMiB(s.anonAfterBytes),
          reference: ref?.anonAfterBytes === undefined ? absent('haproxy') : fmtMiB(ref.anonAfterBytes),
          mark: s.anonAfterBytes === undefined ? 'n/a' : s.anonAfterBytes <= bound ? 'met' : 'MISSED',
        });
      }
    }
  }
  return checks;
}

export function summarize(run: BenchRun): BenchSummary {
  const cells: CellSummary[] = [];
  const unserved: UnservedCell[] = [];
  for (const scenario of run.options.scenarios) {
    const direct = run.samples.filter((s) => s.scenario === scenario && s.pair === 'direct');
    const directP99 = direct.length === 0 ? undefined : median(direct.map((s) => s.load.latencyUs.p99));
    for (const pair of run.pairs.map((p) => p.name)) {
      const samples = run.samples.filter((s) => s.scenario === scenario && s.pair === pair);
      if (samples.length > 0) cells.push(summarizeCell(scenario, pair, samples, directP99));
      else {
        const port = unservedPort(run, scenario, pair);
        if (port !== undefined) unserved.push({ scenario, pair, port });
      }
    }
  }
  return { cells, unserved, targets: checkTargets(cells, run) };
}
