/**
 * Options of `npm run bench` (node dist/bench/main.js), parsed and checked once, every mistake reported
 * together, then frozen.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { InputError } from '../common/errors.js';
import { DEFAULT_PAIR_NAMES, PAIR_NAMES, type PairName } from './pair.js';
import { DEFAULT_SCENARIO_IDS, SCENARIOS } from './scenarios.js';
import { CODE } from '../common/error-codes.js';

export interface BenchOptions {
  /** Seconds of each measured run. */
  readonly seconds: number;
  /** Seconds of the unrecorded warm-up before each measured run (0: none). */
  readonly warmupSeconds: number;
  readonly rounds: number;
  readonly scenarios: readonly string[];
  readonly pairs: readonly PairName[];
  /** Directory for bench-<timestamp>.json; undefined: write nothing. */
  readonly resultsDir: string | undefined;
  /** `--compare PATH`: another build's dist/cli/main.js, run as the `trellis-b` pair beside `trellis`. */
  readonly compareCli: string | undefined;
  readonly help: boolean;
}

/** Minutes a run of `pairs` pairs takes with the defaults (3 rounds × (1 s warm-up + 10 s) per scenario, plus ~1 s of set-up each). */
function defaultMinutes(pairs: number): number {
  return Math.round((pairs * DEFAULT_SCENARIO_IDS.length * 3 * 12) / 60);
}

/** Every pair but `trellis-b`, which runs only with --compare. */
const ALL_RUNNABLE = PAIR_NAMES.filter((p) => p !== 'trellis-b');

export const BENCH_USAGE = `Usage: npm run bench -- [options]      (or: node dist/bench/main.js [options])

Runs the no-proxy baseline, an HAProxy mTLS pair and a Trellis sidecar pair side by side on this machine,
interleaved and repeated, and prints the medians with the targets checked (against the HAProxy pair).
An nginx stream (C, L4) pair and a Caddy (Go, http ports only) pair can join them with --pairs.

Options:
  --duration SECONDS   length of each measured run (default 10)
  --warmup SECONDS     unrecorded warm-up before each measured run (default 1)
  --rounds N           rounds; every pair runs every scenario once per round (default 3)
  --scenarios A,B      scenarios to run (default: all)
                       ${SCENARIOS.map((s) => s.id).join(', ')}
  --pairs A,B          pairs to run (default: ${DEFAULT_PAIR_NAMES.join(',')})
                       all: ${ALL_RUNNABLE.join(',')} (about ${String(defaultMinutes(ALL_RUNNABLE.length))} min)
                       the default list takes about ${String(defaultMinutes(DEFAULT_PAIR_NAMES.length))} min
  --quick              a short smoke run: 2 s runs, 1 round, 1 s warm-up
  --results DIR        where bench-<timestamp>.json goes (default bench/results)
  --no-results         write no JSON
  --compare PATH       also run PATH (another build's dist/cli/main.js) as the pair trellis-b,
                       interleaved with this build's trellis pair: an A/B in one run
  -h, --help           this text
`;

function positiveInteger(text: string | undefined, name: string, errors: string[], min = 1): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) {
    errors.push(`--${name} must be an integer ≥ ${min}, got "${text}"`);
    return undefined;
  }
  return value;
}

function list<T extends string>(text: string | undefined, name: string, known: readonly T[], errors: string[]): T[] | undefined {
  if (text === undefined) return undefined;
  const items = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const unknown = items.filter((s) => !(known as readonly string[]).includes(s));
  if (unknown.length > 0) errors.push(`--${name}: unknown ${unknown.join(', ')} (known: ${known.join(', ')})`);
  if (items.length === 0) errors.push(`--${name} names nothing`);
  return [...new Set(items)] as T[];
}

export function parseBenchOptions(argv: readonly string[], defaultResultsDir: string): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      duration: { type: 'string' },
      warmup: { type: 'string' },
      rounds: { type: 'string' },
      scenarios: { type: 'string' },
      pairs: { type: 'string' },
      quick: { type: 'boolean', default: false },
      results: { type: 'string' },
      'no-results': { type: 'boolean', default: false },
      compare: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  const errors: string[] = [];
  const quick = values.quick === true;
  const seconds = positiveInteger(values.duration, 'duration', errors) ?? (quick ? 2 : 10);
  const warmupSeconds = positiveInteger(values.warmup, 'warmup', errors, 0) ?? 1;
  const rounds = positiveInteger(values.rounds, 'rounds', errors) ?? (quick ? 1 : 3);
  const scenarios = list(values.scenarios, 'scenarios', DEFAULT_SCENARIO_IDS, errors) ?? [...DEFAULT_SCENARIO_IDS];
  const pairs = list(values.pairs, 'pairs', PAIR_NAMES, errors) ?? [...DEFAULT_PAIR_NAMES];
  const compareCli = values.compare === undefined ? undefined : resolve(values.compare);
  if (compareCli !== undefined && !pairs.includes('trellis-b')) pairs.push('trellis-b');
  if (compareCli === undefined && pairs.includes('trellis-b')) errors.push('--pairs trellis-b needs --compare PATH');
  if (values['no-results'] === true && values.results !== undefined) errors.push('--results and --no-results contradict each other');
  if (errors.length > 0) throw new InputError(CODE.BENCH_OPTIONS, `bad options:\n  ${errors.join('\n  ')}`);
  return Object.freeze({
    seconds,
    warmupSeconds,
    rounds,
    scenarios: Object.freeze(scenarios),
    pairs: Object.freeze(PAIR_NAMES.filter((p) => pairs.includes(p))),
    resultsDir: values['no-results'] === true ? undefined : (values.results ?? defaultResultsDir),
    compareCli,
    help: values.help === true,
  });
}
