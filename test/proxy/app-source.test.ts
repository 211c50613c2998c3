/**
 * Where the inbound side dials its app from: the kernel's choice normally and for loopback apps; the
 * hand-off source (which the capture rules exempt) for an app on the workload address in capture mode.
 * The end-to-end proof is test/e2e/capture-mesh.test.ts (echo listens on its workload address only).
 */
import { describe, expect, it } from 'vitest';
import { appLocalAddress, HANDOFF_SOURCE, isLoopbackHost } from '../../proxy/inbound/app-source.js';

describe('appLocalAddress', () => {
  it('leaves the choice to the kernel without capture', () => {
    expect(appLocalAddress('10.1.2.3', undefined)).toBeUndefined();
  });

  it('leaves loopback apps alone in capture mode', () => {
    for (const host of ['127.0.0.1', '127.0.0.53', 'localhost', '::1', '::ffff:127.0.0.1']) {
      expect(isLoopbackHost(host)).toBe(true);
      expect(appLocalAddress(host, HANDOFF_SOURCE)).toBeUndefined();
    }
  });

  it('dials an app on the workload address from the hand-off source of its family', () => {
    expect(appLocalAddress('10.1.2.3', HANDOFF_SOURCE)).toBe('127.0.0.6');
    expect(appLocalAddress('fd00::12', HANDOFF_SOURCE)).toBe('::6');
  });
});
