/**
 * The benchmark's parsers and statistics: what wrk and h2load print, /proc fields, options, medians and
 * the target marks. A wrong parser would report numbers nobody measured, so each is pinned here.
 */
import { describe, expect, it } from 'vitest';
import { h2loadSample, parseH2loadLog, parseH2loadSummary } from '../../bench/h2load.js';
import { median, percentileOfSorted, type LoadSample } from '../../bench/load-sample.js';
import { parseBenchOptions } from '../../bench/options.js';
import { parseCpuSeconds } from '../../bench/proc-stats.js';
import type { BenchRun, RunSample } from '../../bench/runner.js';
import { checkSample } from '../../bench/runner.js';
import { scenarioById } from '../../bench/scenarios.js';
import { TARGETS, summarize } from '../../bench/summary.js';
import { parseWrkOutput } from '../../bench/wrk.js';
import { renderReport } from '../../bench/report.js';
import type { PairName } from '../../bench/pair.js';

const WRK_STDOUT = `Running 2s test @ http://127.0.0.1:1/
  1 threads and 16 connections
TRELLIS_BENCH_WRK {"duration_us":2000000,"requests":300000,"bytes":50000000,"connect":1,"read":2,"write":3,"status":7,"timeout":4,"p50":79.0,"p90":120.0,"p99":800.0,"p999":1486.0,"mean":86.125,"max":2670.0}
`;

const H2LOAD_STDOUT = `finished in 2.00s, 400.00 req/s, 59.77KB/s
requests: 800 total, 804 started, 800 done, 797 succeeded, 3 failed, 2 errored, 1 timeout
status codes: 797 2xx, 0 3xx, 1 4xx, 0 5xx
traffic: 119.53KB (122400) total, 84.38KB (86400) headers (space savings 0.00%), 4.69KB (4800) data
`;

describe('wrk output', () => {
  it('reads the done() line exactly', () => {
    const s = parseWrkOutput(WRK_STDOUT, ['wrk']);
    expect(s.requests).toBe(300000);
    expect(s.requestsPerSecond).toBe(150000);
    expect(s.mebibytesPerSecond).toBeCloseTo(50000000 / 1048576 / 2, 6);
    expect(s.latencyUs).toEqual({ p50: 79, p90: 120, p99: 800, p999: 1486, mean: 86.125, max: 2670 });
    expect(s.errors).toEqual({ connect: 1, read: 2, write: 3, timeout: 4, other: 0 });
    expect(s.non2xx).toBe(7);
  });

  it('refuses output without the result line or with a missing field', () => {
    expect(() => parseWrkOutput('Running 2s test\n', ['wrk'])).toThrow(/no result line/);
    expect(() => parseWrkOutput('TRELLIS_BENCH_WRK {"duration_us":1}\n', ['wrk'])).toThrow(/no numeric requests/);
  });

  it('reports no latency rather than zero when nothing completed', () => {
    const s = parseWrkOutput(WRK_STDOUT.replace('"requests":300000', '"requests":0'), ['wrk']);
    expect(Number.isNaN(s.latencyUs.p99)).toBe(true);
  });
});

describe('h2load output', () => {
  it('reads the summary lines', () => {
    const s = parseH2loadSummary(H2LOAD_STDOUT);
    expect(s).toMatchObject({ seconds: 2, done: 800, succeeded: 797, failed: 3, errored: 2, timeout: 1, bytes: 122400 });
    expect(parseH2loadSummary(H2LOAD_STDOUT.replace('finished in 2.00s', 'finished in 500.5ms')).seconds).toBeCloseTo(0.5005, 6);
  });

  it('computes exact percentiles from the per-request log and counts each failure once', () => {
    const lines = Array.from({ length: 1000 }, (_, i) => `17954231574883${String(i).padStart(2, '0')}\t200\t${i + 1}`);
    lines.push('1795423157488999\t-1\t5000000');
    const log = `${lines.join('\n')}\n`;
    expect(parseH2loadLog(log).length).toBe(1000);
    const s = h2loadSample(H2LOAD_STDOUT, log, ['h2load']);
    expect(s.latencyUs.p50).toBe(500);
    expect(s.latencyUs.p99).toBe(990);
    expect(s.latencyUs.p999).toBe(999);
    expect(s.latencyUs.max).toBe(1000);
    expect(s.requests).toBe(798);
    expect(s.non2xx).toBe(1);
    expect(s.errors).toEqual({ connect: 0, read: 0, write: 0, timeout: 1, other: 1 });
  });

  it('refuses output it does not recognise', () => {
    expect(() => parseH2loadSummary('nothing useful')).toThrow(/finished in/);
  });
});

describe('statistics', () => {
  it('nearest-rank percentiles and medians', () => {
    expect(percentileOfSorted([1, 2, 3, 4], 50)).toBe(2);
    expect(percentileOfSorted([1, 2, 3, 4], 100)).toBe(4);
    expect(percentileOfSorted([7], 99.9)).toBe(7);
    expect(Number.isNaN(percentileOfSorted([], 50))).toBe(true);
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([Number.NaN, 5])).toBe(5);
    expect(Number.isNaN(median([]))).toBe(true);
  });

  it('reads utime+stime after a command name that holds spaces and parentheses', () => {
    const stat = '1234 (node (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 11 0 100 1000 200';
    expect(parseCpuSeconds(stat, 100)).toBe(3);
  });
});

describe('options', () => {
  it('defaults, quick mode and lists', () => {
    const d = parseBenchOptions([], '/r');
    expect(d).toMatchObject({ seconds: 10, rounds: 3, warmupSeconds: 1, resultsDir: '/r', pairs: ['direct', 'haproxy', 'trellis'] });
    expect(Object.isFrozen(d)).toBe(true);
    expect(parseBenchOptions(['--quick'], '/r')).toMatchObject({ seconds: 2, rounds: 1 });
    const o = parseBenchOptions(['--pairs', 'trellis,direct', '--scenarios', 'close-tcp', '--duration', '5', '--no-results'], '/r');
    expect(o).toMatchObject({ pairs: ['direct', 'trellis'], scenarios: ['close-tcp'], seconds: 5, resultsDir: undefined });
  });

  it('reports every bad option at once', () => {
    expect(() => parseBenchOptions(['--duration', '0', '--rounds', 'x', '--pairs', 'envoy', '--scenarios', 'nope'], '/r')).toThrow(
      /--duration must be an integer ≥ 1[\s\S]*--rounds[\s\S]*unknown nope[\s\S]*unknown envoy/,
    );
  });
});

function load(rps: number, p99: number, extra: Partial<LoadSample> = {}): LoadSample {
  return {
    tool: 'wrk',
    command: ['wrk'],
    seconds: 1,
    requests: rps,
    bytes: rps * 100,
    requestsPerSecond: rps,
    mebibytesPerSecond: (rps * 100) / 1048576,
    latencyUs: { p50: p99 / 2, p90: p99 * 0.9, p99, p999: p99 * 2, mean: p99 / 2, max: p99 * 3 },
    errors: { connect: 0, read: 0, write: 0, timeout: 0, other: 0 },
    non2xx: 0,
    ...extra,
  };
}

function sample(round: number, pair: PairName, l: LoadSample, rss = 30 * 1048576): RunSample {
  const sidecars = pair === 'direct' ? [] : ['client', 'server'].map((role) => ({ role, pid: 1, cpuSeconds: 0.5, peakRssBytes: rss, peakReset: true, rssAfterBytes: rss, rssAnonAfterBytes: rss }));
  return { round, scenario: 'keepalive-tcp', pair, startedAt: '', load: l, sidecars, warnings: [] };
}

function run(samples: RunSample[], finalRss = 30 * 1048576): BenchRun {
  const present = new Set(samples.map((s) => s.pair));
  return {
    startedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: '2026-01-01T00:01:00.000Z',
    options: parseBenchOptions(['--scenarios', 'keepalive-tcp'], '/r'),
    machine: { cpuModel: 'cpu', cpuCount: 2, kernel: 'k', node: 'v20', tools: {}, loadAverageBefore: [0, 0, 0] },
    pairs: (['direct', 'haproxy', 'trellis'] as const).filter((p) => present.has(p)).map((name) => ({ name, description: name })),
    samples,
    finalSidecars: (['haproxy', 'trellis'] as const).filter((p) => present.has(p)).flatMap((pair) => ['client', 'server'].map((role) => ({ pair, role, rssBytes: finalRss, peakRssBytes: finalRss }))),
  };
}

describe('summary and targets', () => {
  it('takes medians across rounds and marks met targets', () => {
    const samples = [1, 2, 3].flatMap((r) => [
      sample(r, 'direct', load(60000, 1000)),
      sample(r, 'haproxy', load(30000 + r, 3000 + r)),
      sample(r, 'trellis', load(35000 + r * 1000, 2000 + r)),
    ]);
    const s = summarize(run(samples));
    const trellis = s.cells.find((c) => c.pair === 'trellis');
    expect(trellis?.requestsPerSecond).toBe(37000);
    expect(trellis?.addedP99Us).toBe(1002);
    expect(s.targets.every((t) => t.mark === 'met')).toBe(true);
    expect(renderReport(run(samples), s)).toMatch(/keepalive-tcp\s+no proxy\s+60000/);
  });

  it('a faster pair with errors, or a sidecar over its anonymous-memory bound, misses', () => {
    const samples = [
      sample(1, 'direct', load(60000, 1000)),
      sample(1, 'haproxy', load(30000, 3000)),
      sample(1, 'trellis', load(50000, 2000, { errors: { connect: 0, read: 3, write: 0, timeout: 0, other: 0 } }), TARGETS.anonAfterSmallBytes + 1),
    ];
    const marks = Object.fromEntries(summarize(run(samples)).targets.map((t) => [t.target, t.mark]));
    expect(marks['throughput ≥ 0.9× HAProxy pair']).toBe('MISSED');
    expect(marks['no errors, no non-2xx, no suspect run']).toBe('MISSED');
    expect(marks['anonymous memory after the run ≤ 32 MiB (client sidecar)']).toBe('MISSED');
    expect(marks['anonymous memory after the run ≤ 32 MiB (server sidecar)']).toBe('MISSED');
  });

  it('throughput is judged as a share of the HAProxy pair: 0.9× on keepalive-tcp is met, just under it is not', () => {
    const at = (rps: number): string | undefined =>
      summarize(run([sample(1, 'haproxy', load(10000, 3000)), sample(1, 'trellis', load(rps, 2000))])).targets.find((t) => t.target === 'throughput ≥ 0.9× HAProxy pair')?.mark;
    expect(at(9000)).toBe('met');
    expect(at(8999)).toBe('MISSED');
  });

  it('without a Trellis pair the targets are not applicable', () => {
    const samples = [sample(1, 'direct', load(60000, 1000)), sample(1, 'haproxy', load(30000, 3000))];
    expect(summarize(run(samples)).targets.every((t) => t.mark === 'n/a')).toBe(true);
  });

  it('flags a run that delivered short bodies or nothing', () => {
    const big = scenarioById('1mib-tcp');
    expect(big).toBeDefined();
    if (big === undefined) return;
    expect(checkSample(big, load(100, 1000))).toEqual([expect.stringMatching(/less than the 1048576-byte body/)]);
    expect(checkSample(big, load(0, 1000))).toEqual(['no response completed']);
    expect(checkSample(big, load(100, 1000, { bytes: 100 * 1048700 }))).toEqual([]);
  });
});
