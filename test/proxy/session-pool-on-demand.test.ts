/**
 * Destinations the pool keeps without opening them ahead of need (`warm(targets, onDemand)`): a capture-mode
 * sidecar subscribed to the whole mesh must not hold sessions to every endpoint of it, yet a session it
 * opened on first use must survive config changes that still name the destination.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PoolTarget } from '../../proxy/outbound/tunnel-client/session-pool.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { allow, closeServer, echoServer, policyOf, startServerSidecar, testPool } from './support/mesh.js';

let pki: TestPki;
const cleanup: (() => Promise<void>)[] = [];

beforeAll(async () => {
  pki = await createTestPki();
});

afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

describe('session pool: on-demand destinations', () => {
  it('opens nothing ahead of need for them, keeps what first use opened, and drops them once unnamed', async () => {
    const app = await echoServer();
    cleanup.push(() => closeServer(app.server, app.sockets));
    const server = await startServerSidecar({ identity: await pki.issue('api', 'shop'), appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }], policy: policyOf(allow('api', ['web'])) });
    cleanup.push(() => server.stop(0));
    const pool = await testPool(pki);
    cleanup.push(() => pool.close(0));
    const target: PoolTarget = {
      endpoint: { address: '127.0.0.1', tunnelPort: server.addresses().tunnel!.port, zone: 'zone-a', healthy: true },
      service: 'api',
      namespace: 'shop',
      port: app.port,
    };

    pool.warm([], [target]);
    expect(pool.stats()).toMatchObject({ groups: 0, sessions: 0 });

    const stream = await pool.openStream(target, { ':method': 'CONNECT', ':authority': `api.shop:${app.port}` });
    stream.close();
    expect(pool.stats().groups).toBe(1);
    await expect.poll(() => pool.stats().readySessions).toBe(1);

    // A config change that still names it on demand keeps the session (and opens no second one).
    pool.warm([], [target]);
    expect(pool.stats()).toMatchObject({ groups: 1, sessions: 1 });

    // Named ahead of need: filled to the per-endpoint count.
    pool.warm([target]);
    await expect.poll(() => pool.stats().readySessions).toBe(2);

    // No longer named at all: dropped.
    pool.warm([], []);
    expect(pool.stats().groups).toBe(0);
  });
});
