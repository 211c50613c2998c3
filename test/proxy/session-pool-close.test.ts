/**
 * Closing the pool while a session is still in its TLS handshake with a peer that never answers: close()
 * must resolve within its grace (the half-open session destroyed), not wait for the handshake deadline.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server, type Socket } from 'node:net';
import type { PoolTarget } from '../../proxy/outbound/tunnel-client/session-pool.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { testPool } from './support/mesh.js';

let pki: TestPki;
const cleanup: (() => Promise<void>)[] = [];

beforeAll(async () => {
  pki = await createTestPki();
});

afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

describe('session pool: close', () => {
  it('resolves within its grace while a session is mid-handshake with a silent peer', async () => {
    const sockets = new Set<Socket>();
    const closedByPeer = new Set<Socket>();
    // Accepts and never reads or answers (a peer stuck before its handshake).
    const silent: Server = createServer((s) => { sockets.add(s); s.on('error', () => undefined); s.on('close', () => closedByPeer.add(s)); });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => { for (const s of sockets) s.destroy(); silent.close(() => r()); }));
    const pool = await testPool(pki);
    const port = (silent.address() as { port: number }).port;
    const target: PoolTarget = { endpoint: { address: '127.0.0.1', tunnelPort: port, zone: 'zone-a', healthy: true }, service: 'api', namespace: 'shop', port: 8080 };
    const opening = pool.openStream(target, { ':method': 'CONNECT', ':authority': 'api.shop:8080' });
    opening.catch(() => undefined);
    await expect.poll(() => sockets.size).toBe(1);
    const started = Date.now();
    await pool.close(200);
    expect(Date.now() - started).toBeLessThan(5_000);
    await expect(opening).rejects.toThrow();
    // The half-open connection is closed, not left to the peer (read now to see its end).
    for (const s of sockets) s.resume();
    await expect.poll(() => closedByPeer.size).toBe(1);
  });
});
