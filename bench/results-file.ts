/**
 * The JSON record of a run: options, machine, every raw sample (each with its exact command line) and the
 * summary with the target marks, under bench/results/bench-<timestamp>.json (git-ignored).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../common/atomic-file.js';
import type { BenchRun } from './runner.js';
import type { BenchSummary } from './summary.js';

export const RESULTS_FORMAT = 'trellis-bench/v1';

export function resultsFileName(startedAt: string): string {
  return `bench-${startedAt.replace(/[:.]/g, '-')}.json`;
}

export async function writeResults(dir: string, run: BenchRun, summary: BenchSummary): Promise<string> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, resultsFileName(run.startedAt));
  // NaN (a latency with no response at all) is not JSON; null says "no value" honestly.
  const json = JSON.stringify({ format: RESULTS_FORMAT, ...run, summary }, (_key, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? null : value), 2);
  await writeFileAtomic(path, `${json}\n`);
  return path;
}
