#!/usr/bin/env node
/**
 * `npm run bench` (node dist/bench/main.js): the benchmark's entry point. Reads argv here and nowhere
 * else, stops every process it started on Ctrl-C or SIGTERM, prints the table and writes the JSON.
 * Targets are marked in the report, never turned into a failing exit code: a benchmark on a shared
 * machine is evidence, not a gate.
 */
import { isEntryPoint } from '../common/entry-point.js';
import { describeError, isTrellisError } from '../common/errors.js';
import { BENCH_USAGE, parseBenchOptions } from './options.js';
import type { PairFactory, PairName } from './pair.js';
import { directPair } from './pairs/direct.js';
import { caddyPair } from './pairs/caddy.js';
import { haproxyPair } from './pairs/haproxy.js';
import { haproxySniIngressPair, trellisIngressPair } from './pairs/ingress.js';
import { nginxStreamPair } from './pairs/nginx-stream.js';
import { trellisComparePair, trellisPair } from './pairs/trellis.js';
import { builtCliPath, defaultResultsDir } from './paths.js';
import { renderReport } from './report.js';
import { writeResults } from './results-file.js';
import { runBench } from './runner.js';
import { summarize } from './summary.js';

export const PAIR_FACTORIES: Readonly<Record<PairName, PairFactory>> = Object.freeze({
  direct: directPair,
  haproxy: haproxyPair,
  'nginx-stream': nginxStreamPair,
  caddy: caddyPair,
  trellis: trellisPair,
  'trellis-b': trellisComparePair,
  'trellis-ingress': trellisIngressPair,
  'haproxy-sni-ingress': haproxySniIngressPair,
});

export interface BenchIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly signal?: AbortSignal;
}

export async function benchMain(argv: readonly string[], io: BenchIo): Promise<number> {
  let options;
  try {
    options = parseBenchOptions(argv, defaultResultsDir());
  } catch (err) {
    io.stderr.write(`bench: ${describeError(err)}\n\n${BENCH_USAGE}`);
    return 2;
  }
  if (options.help) {
    io.stdout.write(BENCH_USAGE);
    return 0;
  }
  try {
    const run = await runBench(
      options,
      options.pairs.map((name) => PAIR_FACTORIES[name]),
      { progress: (line) => io.stderr.write(`bench: ${line}\n`), signal: io.signal, trellisCli: builtCliPath(), ...(options.compareCli === undefined ? {} : { compareCli: options.compareCli }) },
    );
    const summary = summarize(run);
    io.stdout.write(`\n${renderReport(run, summary)}\n`);
    if (options.resultsDir !== undefined) {
      const path = await writeResults(options.resultsDir, run, summary);
      io.stdout.write(`\nRaw samples and summary: ${path}\n`);
    }
    return 0;
  } catch (err) {
    if (io.signal?.aborted === true) {
      io.stderr.write('bench: interrupted; every process it started is stopped and its temporary files removed\n');
      return 130;
    }
    io.stderr.write(`bench: ${describeError(err)}\n`);
    return isTrellisError(err) && err.side === 'input' ? 2 : 1;
  }
}

if (isEntryPoint(import.meta.url)) {
  const abort = new AbortController();
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) process.exit(130);
    process.stderr.write(`bench: ${signal}: stopping every process and removing temporary files (again to force)\n`);
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  benchMain(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, signal: abort.signal }).then(
    (code) => {
      process.exitCode = abort.signal.aborted ? 130 : code;
    },
    (err: unknown) => {
      process.stderr.write(`bench: ${describeError(err)}\n`);
      process.exitCode = 1;
    },
  );
}
