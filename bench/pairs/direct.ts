/**
 * The baseline: the load generator talks to the backend itself. Its latency is what the other pairs'
 * "added latency" is measured against.
 */
import type { PairFactory, RunningPair } from '../pair.js';

export const directPair: PairFactory = {
  name: 'direct',
  start(context): Promise<RunningPair> {
    return Promise.resolve({
      name: 'direct',
      entry: context.backend,
      sidecars: [],
      description: 'load generator straight to the backend',
      assertAlive: () => undefined,
      stop: () => Promise.resolve(),
    });
  },
};
