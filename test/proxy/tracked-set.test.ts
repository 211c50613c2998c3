import { describe, expect, it } from 'vitest';
import { TrackedSet } from '../../proxy/core/tracked-set.js';

describe('TrackedSet', () => {
  it('resolves whenEmpty at once when nothing is tracked', async () => {
    expect(await new TrackedSet<string>().whenEmpty(10_000)).toBe(true);
  });

  it('resolves whenEmpty only after the last entry is removed, however late', async () => {
    const set = new TrackedSet<string>();
    const removeA = set.add('a');
    const removeB = set.add('b');
    let settled: boolean | undefined;
    const waiting = set.whenEmpty(10_000).then((v) => (settled = v));
    removeA();
    await new Promise((r) => setImmediate(r));
    expect(settled).toBeUndefined();
    removeA(); // removing twice must not count for another entry
    await new Promise((r) => setImmediate(r));
    expect(settled).toBeUndefined();
    setTimeout(removeB, 20);
    await waiting;
    expect(settled).toBe(true);
    expect(set.size).toBe(0);
  });

  it('gives up after the limit when an entry is never removed', async () => {
    const set = new TrackedSet<string>();
    set.add('stuck');
    expect(await set.whenEmpty(20)).toBe(false);
    expect(set.snapshot()).toEqual(['stuck']);
  });
});
