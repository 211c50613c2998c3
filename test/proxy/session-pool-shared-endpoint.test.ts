/**
 * Groups of the pool that share one endpoint (several app ports of a sidecar; behind a zone ingress, every
 * remote service): when a session to the endpoint works again, the others stop backing off and dial at
 * once. Found by test/e2e/multizone-netns.test.ts: after west's ingress was down and came back, a group
 * that had failed meanwhile kept failing fast for its remaining backoff, so a failover to west refused
 * requests for seconds although payments through the same ingress worked again.
 */
import { createServer, connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
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

describe('session pool: groups of one endpoint', () => {
  it('dials a group that is backing off as soon as another group reaches the same endpoint', async () => {
    const [appA, appB] = [await echoServer(), await echoServer()];
    cleanup.push(() => closeServer(appA.server, appA.sockets), () => closeServer(appB.server, appB.sockets));
    const appPorts = [appA, appB].map((a) => ({ port: a.port, protocol: 'tcp' as const, host: '127.0.0.1' }));
    const server = await startServerSidecar({ identity: await pki.issue('api', 'shop'), appPorts, policy: policyOf(allow('api', ['web'])) });
    cleanup.push(() => server.stop(0));

    // The endpoint as the pool sees it: a relay that drops every connection while "down", then forwards.
    let up = false;
    const sockets = new Set<Socket>();
    const relay = createServer((c) => {
      sockets.add(c);
      c.on('error', () => undefined);
      if (!up) return void c.destroy();
      const s = connect(server.addresses().tunnel!.port, '127.0.0.1');
      sockets.add(s);
      s.on('error', () => undefined);
      c.pipe(s).pipe(c);
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    cleanup.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => relay.close(r));
    });

    // A backoff far longer than the test: a group that failed retries only if something tells it to.
    const pool = await testPool(pki, { sessionsPerEndpoint: 1, backoff: { initialMs: 120_000, maxMs: 120_000 } });
    cleanup.push(() => pool.close(0));
    const endpoint = { address: '127.0.0.1', tunnelPort: (relay.address() as AddressInfo).port, zone: 'zone-a', healthy: true };
    const target = (port: number): PoolTarget => ({ endpoint, service: 'api', namespace: 'shop', port });
    const open = (port: number): Promise<unknown> => pool.openStream(target(port), { ':method': 'CONNECT', ':authority': `api.shop:${port}` }).then((s) => s.close());

    pool.warm([target(appA.port)]);
    await expect.poll(() => open(appA.port).then(() => 'open', (err: Error) => err.message)).toMatch(/backing off/);

    // The endpoint is back, and the other app port's group (new, so not backing off) reaches it.
    up = true;
    pool.warm([target(appA.port), target(appB.port)]);
    await open(appB.port);
    // appA's group dials now instead of in two minutes.
    await expect.poll(() => pool.stats().readySessions, { timeout: 5_000 }).toBe(2);
    await open(appA.port);
  });
});
