/**
 * The sidecar's periodic memory return (proxy/core/memory-trim.ts): the glibc addon is built at install,
 * and trimming gives back memory that freed buffers left in the allocator.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { silentLogger } from '../../common/log.js';
import { MAX_DEFERRED, startMemoryTrim, trimDue, trimMemory } from '../../proxy/core/memory-trim.js';

function rssAnonKiB(): number {
  const match = /RssAnon:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'));
  return Number(match?.[1] ?? Number.NaN);
}

describe('when to trim', () => {
  it('trims after a quiet interval, puts it off while the loop is busy, but never more than MAX_DEFERRED times in a row', () => {
    expect(trimDue(0, 0)).toBe(true);
    expect(trimDue(0.05, 0)).toBe(true);
    expect(trimDue(0.9, 0)).toBe(false);
    expect(trimDue(0.9, MAX_DEFERRED - 1)).toBe(false);
    expect(trimDue(0.9, MAX_DEFERRED)).toBe(true);
  });
});

const available = trimMemory() !== undefined;
if (!available && process.env.CI === 'true') throw new Error('CI=true and the memory_trim addon is unavailable (did `npm ci` build binding.gyp?)');

describe.skipIf(!available)('memory trimming', () => {
  it('returns memory that freed buffers left in the allocator', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    trimMemory();
    let buffers: Buffer[] = [];
    for (let i = 0; i < 1024; i += 1) buffers.push(Buffer.alloc(64 * 1024, i));
    const held = rssAnonKiB();
    buffers = [];
    gc();
    // V8 frees ArrayBuffer backing stores on a background sweeper after the GC: let it finish.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const beforeTrim = rssAnonKiB();
    expect(trimMemory()).toBe(true);
    const afterTrim = rssAnonKiB();
    // 64 MiB was allocated; most of it must go back to the kernel on the trim, not before.
    expect(held).toBeGreaterThan(afterTrim + 32 * 1024);
    expect(beforeTrim - afterTrim).toBeGreaterThan(16 * 1024);
  });

  it('runs on a timer that can be stopped, and not at all with interval 0', () => {
    const stop = startMemoryTrim(60_000, silentLogger());
    stop();
    const off = startMemoryTrim(0, silentLogger());
    off();
  });
});
