/**
 * h2load (`--h1`, a fixed request rate with `--rps`) for the latency scenario. Its summary gives only
 * min/max/mean/sd, so every request's latency is taken from its `--log-file` (start time, status,
 * microseconds to the end of the response) and the percentiles computed exactly from those.
 *
 * Each client sends at its own fixed rate, one request at a time: a response slower than the interval
 * delays that client's next request, so a stall is under-counted (coordinated omission), equally for
 * every pair. At a moderate rate, well under every pair's capacity, that rarely happens.
 */
import { readFile, rm } from 'node:fs/promises';
import type { ProcessGroup } from './processes.js';
import { MIB, percentileOfSorted, type LoadSample } from './load-sample.js';

export interface H2loadOptions {
  readonly url: string;
  readonly clients: number;
  /** Requests per second for each client. */
  readonly ratePerClient: number;
  readonly seconds: number;
  /** Where h2load writes one line per request. */
  readonly logFile: string;
}

export function h2loadArgs(options: H2loadOptions): string[] {
  return [
    '--h1',
    '-t', '1',
    '-c', String(options.clients),
    '--rps', String(options.ratePerClient),
    '-D', String(options.seconds),
    '-T', '5',
    '--log-file', options.logFile,
    options.url,
  ];
}

interface H2loadSummary {
  seconds: number;
  done: number;
  succeeded: number;
  failed: number;
  errored: number;
  timeout: number;
  status: { s2xx: number; s3xx: number; s4xx: number; s5xx: number };
  bytes: number;
}

function match(stdout: string, pattern: RegExp, what: string): RegExpExecArray {
  const m = pattern.exec(stdout);
  if (m === null) throw new Error(`h2load output has no ${what} line:\n${stdout.slice(-2000)}`);
  return m;
}

export function parseH2loadSummary(stdout: string): H2loadSummary {
  const finished = match(stdout, /^finished in ([\d.]+)(ms|s),/m, '"finished in"');
  const req = match(stdout, /^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/m, '"requests:"');
  const codes = match(stdout, /^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/m, '"status codes:"');
  const traffic = match(stdout, /^traffic: \S+ \((\d+)\) total/m, '"traffic:"');
  const n = (m: RegExpExecArray, i: number): number => Number(m[i]);
  return {
    seconds: n(finished, 1) / (finished[2] === 'ms' ? 1000 : 1),
    done: n(req, 3),
    succeeded: n(req, 4),
    failed: n(req, 5),
    errored: n(req, 6),
    timeout: n(req, 7),
    status: { s2xx: n(codes, 1), s3xx: n(codes, 2), s4xx: n(codes, 3), s5xx: n(codes, 4) },
    bytes: n(traffic, 1),
  };
}

/** Latencies (µs) of the requests that got a response, sorted ascending. */
export function parseH2loadLog(text: string): Float64Array {
  const values: number[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const [, status, micros] = line.split('\t');
    if (Number(status) > 0 && micros !== undefined && Number.isFinite(Number(micros))) values.push(Number(micros));
  }
  return Float64Array.from(values).sort();
}

export function h2loadSample(stdout: string, log: string, command: readonly string[]): LoadSample {
  const s = parseH2loadSummary(stdout);
  const latencies = parseH2loadLog(log);
  let sum = 0;
  for (const v of latencies) sum += v;
  const none = latencies.length === 0;
  const pct = (p: number): number => (none ? Number.NaN : percentileOfSorted(latencies, p));
  const requests = s.status.s2xx + s.status.s3xx + s.status.s4xx + s.status.s5xx;
  return {
    tool: 'h2load',
    command,
    seconds: s.seconds,
    requests,
    bytes: s.bytes,
    requestsPerSecond: s.seconds > 0 ? requests / s.seconds : 0,
    mebibytesPerSecond: s.seconds > 0 ? s.bytes / MIB / s.seconds : 0,
    latencyUs: {
      p50: pct(50),
      p90: pct(90),
      p99: pct(99),
      p999: pct(99.9),
      mean: none ? Number.NaN : sum / latencies.length,
      max: none ? Number.NaN : (latencies[latencies.length - 1] as number),
    },
    // h2load's "failed" also counts non-2xx responses (reported apart below) and "errored" includes the
    // timed-out requests: count each failure once.
    errors: { connect: 0, read: 0, write: 0, timeout: s.timeout, other: Math.max(0, s.errored - s.timeout) },
    non2xx: s.status.s3xx + s.status.s4xx + s.status.s5xx,
  };
}

export async function runH2load(group: ProcessGroup, options: H2loadOptions): Promise<LoadSample> {
  // A log left by an earlier run must never be read as this run's.
  await rm(options.logFile, { force: true });
  const args = h2loadArgs(options);
  const proc = await group.run({ name: 'h2load', command: 'h2load', args }, (options.seconds + 30) * 1000);
  const info = await proc.exited;
  if (info.code !== 0) throw new Error(`h2load failed: ${proc.describeExit()}`);
  return h2loadSample(proc.stdout(), await readFile(options.logFile, 'utf8'), ['h2load', ...args]);
}
