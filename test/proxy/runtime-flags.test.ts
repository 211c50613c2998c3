/**
 * Regression: a sidecar started with V8's default heap sizing (16 MiB semi-spaces, an old generation
 * allowed to grow towards ~4 GiB before its first compaction) peaked at 190–280 MiB RSS in the benchmark.
 * The launcher flags must be accepted by this Node, on the command line and in NODE_OPTIONS (the
 * environment form deployments use), and must bound the heap as proxy/runtime-flags.ts says.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { SIDECAR_NODE_FLAGS, SIDECAR_NODE_OPTIONS } from '../../proxy/runtime-flags.js';

const PROBE = 'const s = require("v8").getHeapStatistics(); process.stdout.write(JSON.stringify({ limit: s.heap_size_limit }))';
const MiB = 1024 * 1024;

function heapLimit(args: readonly string[], env: NodeJS.ProcessEnv): number {
  const out = execFileSync(process.execPath, [...args, '-e', PROBE], { env, encoding: 'utf8' });
  return (JSON.parse(out) as { limit: number }).limit;
}

describe('sidecar heap sizing (unsized heap let RSS reach ~280 MiB)', () => {
  const base: NodeJS.ProcessEnv = { PATH: process.env.PATH };

  it('bounds the heap when passed on the command line', () => {
    const unsized = heapLimit([], base);
    const sized = heapLimit(SIDECAR_NODE_FLAGS, base);
    // 256 MiB old space plus the young generation (3 × 2 MiB semi-space).
    expect(sized).toBeLessThanOrEqual(264 * MiB);
    expect(sized).toBeGreaterThanOrEqual(256 * MiB);
    expect(sized).toBeLessThan(unsized);
  });

  it('is accepted in NODE_OPTIONS, with the same effect', () => {
    const sized = heapLimit([], { ...base, NODE_OPTIONS: SIDECAR_NODE_OPTIONS });
    expect(sized).toBe(heapLimit(SIDECAR_NODE_FLAGS, base));
  });
});
