/**
 * Certificate rotation on fake timers: renewal at half-life within the jitter band, over mutual TLS with
 * the current certificate (never the token), retries with backoff while the old certificate stays in
 * use, and a warning well before expiry when renewal keeps failing.
 */
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { CONTROL_PATHS, type IssueResponse } from '../../api/control-protocol.js';
import { ControlError, type ControlRequest } from '../../api/control-client.js';
import { parseSpiffeId } from '../../ca/spiffe-id.js';
import { holdIdentity, IdentityManager, type HeldIdentity } from '../../agent/identity-manager.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';

let pki: TestPki;
beforeAll(async () => {
  pki = await createTestPki({ trustDomain: 'example.org' });
});

interface Harness {
  manager: IdentityManager;
  calls: ControlRequest[];
  renewed: HeldIdentity[];
  warnings: string[];
  failNext: number;
}

async function settle(until: () => boolean): Promise<void> {
  // Key generation runs on the libuv pool, outside fake time: spin the real event loop until it lands.
  for (let i = 0; i < 5_000 && !until(); i++) await new Promise((r) => setImmediate(r));
}

async function harness(ttlMs: number, random: number): Promise<Harness> {
  const first = holdIdentity(await pki.issue('orders', 'shop', { ttlMs }));
  const h: Harness = { manager: undefined as unknown as IdentityManager, calls: [], renewed: [], warnings: [], failNext: 0 };
  const log = pino({ level: 'warn' }, new Writable({ write: (chunk: Buffer, _e, cb) => (h.warnings.push(chunk.toString()), cb()) }));
  h.manager = new IdentityManager({
    endpoint: () => ({ url: new URL('https://127.0.0.1:1'), trustBundlePem: pki.bundlePem, rootNamespace: 'trellis-system' }),
    readToken: async () => {
      throw new Error('the token must not be used for renewal');
    },
    wantedId: () => 'spiffe://example.org/ns/shop/sa/orders',
    log,
    random: () => random,
    retry: { initialMs: 1_000, maxMs: 1_000 },
    onRenewed: (next) => h.renewed.push(next),
    request: (async (_endpoint: unknown, req: ControlRequest) => {
      h.calls.push(req);
      if (h.failNext > 0) {
        h.failNext--;
        throw new ControlError(0, 'TRELLIS_CONTROL_UNREACHABLE', 'connect ECONNREFUSED');
      }
      const signed = await pki.intermediate.signCsr((req.body as { csrPem: string }).csrPem, parseSpiffeId('spiffe://example.org/ns/shop/sa/orders'), { ttlMs });
      return { spiffeId: 'spiffe://example.org/ns/shop/sa/orders', certChainPem: signed.certChainPem, trustBundlePem: pki.bundlePem, notAfter: signed.notAfter.toISOString(), serial: signed.serial, trustDomain: 'example.org', zone: 'z' } satisfies IssueResponse;
    }) as never,
  });
  expect(h.manager.adopt(first)).toBe(true);
  return h;
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('IdentityManager rotation', () => {
  it('renews at half-life (jitter at its midpoint) over mutual TLS, not with the token', async () => {
    const h = await harness(3_600_000, 0.5);
    const held = h.manager.current as HeldIdentity;
    const due = held.notBefore.getTime() + (held.notAfter.getTime() - held.notBefore.getTime()) * 0.5;
    h.manager.schedule();
    vi.advanceTimersByTime(due - Date.now() - 5);
    await settle(() => false);
    expect(h.calls).toHaveLength(0);
    vi.advanceTimersByTime(10);
    await settle(() => h.renewed.length === 1);
    expect(h.calls[0]?.path).toBe(CONTROL_PATHS.renew);
    expect(h.calls[0]?.clientCert?.certChainPem).toBe(held.certChainPem);
    expect(h.calls[0]?.bearer).toBeUndefined();
    expect(h.renewed[0]?.certChainPem).not.toBe(held.certChainPem);
    expect(h.manager.current).toBe(h.renewed[0]);
    h.manager.stop();
  });

  it('keeps the jitter within ±10% of the lifetime', async () => {
    for (const [random, fraction] of [[0, 0.4], [1, 0.6]] as const) {
      const h = await harness(3_600_000, random);
      const held = h.manager.current as HeldIdentity;
      const due = held.notBefore.getTime() + (held.notAfter.getTime() - held.notBefore.getTime()) * fraction;
      h.manager.schedule();
      vi.advanceTimersByTime(due - Date.now() - 5);
      expect(h.calls).toHaveLength(0);
      await settle(() => false);
      expect(h.calls).toHaveLength(0);
      vi.advanceTimersByTime(10);
      await settle(() => h.renewed.length === 1);
      expect(h.calls).toHaveLength(1);
      h.manager.stop();
    }
  });

  it('retries with backoff while the old certificate stays in use, and warns well before expiry', async () => {
    const h = await harness(3_600_000, 0.5);
    const held = h.manager.current as HeldIdentity;
    const lifetime = held.notAfter.getTime() - held.notBefore.getTime();
    h.failNext = 10_000;
    h.manager.schedule();
    // Walk fake time forward in steps, letting each failed attempt settle, until 75% of the lifetime passed.
    const warnAt = held.notAfter.getTime() - lifetime * 0.25;
    while (Date.now() < warnAt + 1_000) {
      vi.advanceTimersByTime(60_000);
      await settle(() => false);
    }
    expect(h.renewed).toHaveLength(0);
    expect(h.manager.current).toBe(held);
    expect(h.calls.length).toBeGreaterThan(10);
    expect(h.manager.failures).toBe(h.calls.length);
    expect(h.warnings.some((w) => w.includes('expiring soon'))).toBe(true);
    h.failNext = 0;
    vi.advanceTimersByTime(60_000);
    await settle(() => h.renewed.length === 1);
    expect(h.renewed).toHaveLength(1);
    expect(h.manager.failures).toBe(0);
    h.manager.stop();
  });
});
