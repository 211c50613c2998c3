/**
 * Joining the mesh, as real processes on loopback: a control plane, agents that bootstrap with join
 * tokens and call each other through their sidecars; a pair the policy does not allow is refused; an
 * expired, revoked or wrong-service token stops the agent with a clear error; a damaged data-dir file
 * stops the control plane naming the file, with nothing else changed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { allow, app, call, cleanup, eventually, freePort, requireBuild, spawnTrellis, startMesh, trellis, type Mesh } from './mesh-support.js';

let mesh: Mesh;
let ordersApp: Awaited<ReturnType<typeof app>>;
let frontendPort: number;
let paymentsPort: number;

beforeAll(async () => {
  requireBuild();
  mesh = await startMesh({ 'orders.yaml': allow('orders', ['frontend']) });
  ordersApp = await app('orders');
  const frontendApp = await app('frontend');
  const paymentsApp = await app('payments');
  frontendPort = await freePort();
  paymentsPort = await freePort();
  await mesh.agent({ service: 'orders', appPort: ordersApp.port });
  await mesh.agent({ service: 'frontend', appPort: frontendApp.port, upstreams: [`orders=${frontendPort}`] });
  await mesh.agent({ service: 'payments', appPort: paymentsApp.port, upstreams: [`orders=${paymentsPort}`] });

  // Four processes start and join here; on a loaded 2-core runner that alone can pass 30 s.
}, 90_000);

afterAll(cleanup);

describe('join and call', () => {
  it('carries an allowed call from frontend to orders', async () => {
    const res = await eventually(() => call(frontendPort, '/orders/1').catch(() => undefined), 'frontend reaches orders');
    expect(res).toEqual({ status: 200, body: 'orders GET /orders/1\n' });
  });

  it('refuses a call from a pair the policy does not allow, before the app sees a byte', async () => {
    await eventually(() => call(frontendPort, '/').then(() => true), 'frontend reaches orders');
    const hits = ordersApp.hits();
    // The listener is there (orders is registered), the tunnel refuses the stream.
    await eventually(async () => {
      const result = await call(paymentsPort, '/').then((r) => `status ${r.status}`, (err: Error) => err.message);
      return result.startsWith('status 200') ? undefined : result;
    }, 'payments is refused');
    expect(ordersApp.hits()).toBe(hits);
  });
});

describe('tokens that must not work', () => {
  async function refusedAgent(tokenFile: string, service: string): Promise<{ exitCode: number; output: string }> {
    const err = await mesh.agent({ service, appPort: ordersApp.port, tokenFile }).then(
      (p) => {
        void p.stop('SIGKILL');
        throw new Error('the agent started');
      },
      (e: unknown) => e as { exitCode: number; output: string },
    );
    return err;
  }

  it('refuses an expired token', async () => {
    const file = await mesh.token('orders', '1s');
    await new Promise((r) => setTimeout(r, 1_100));
    const { exitCode, output } = await refusedAgent(file, 'orders');
    expect(exitCode).toBe(2);
    expect(output).toMatch(/TRELLIS_TOKEN_EXPIRED/);
  });

  it('refuses a revoked token', async () => {
    const file = await mesh.token('orders');
    const list = await trellis(['token', 'list', '--data-dir', mesh.dataDir]);
    const id = list.stdout.trim().split('\n').at(-1)?.split(/\s+/)[0] as string;
    expect((await trellis(['token', 'revoke', id, '--data-dir', mesh.dataDir])).code).toBe(0);
    const { exitCode, output } = await refusedAgent(file, 'orders');
    expect(exitCode).toBe(2);
    expect(output).toMatch(/TRELLIS_TOKEN_REVOKED/);
  });

  it('refuses a token made for another service', async () => {
    const file = await mesh.token('payments');
    const { exitCode, output } = await refusedAgent(file, 'orders');
    expect(exitCode).toBe(2);
    expect(output).toMatch(/TRELLIS_TOKEN_WRONG_SERVICE/);
  });
});

describe('a damaged data dir', () => {
  it('stops the control plane with the file named, and changes nothing', async () => {
    const dir = join(mesh.dir, 'broken');
    const first = await spawnTrellis(['control', 'run', '--data-dir', dir, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--log-level', 'warn']);
    expect(await first.stop()).toBe(0);
    await trellis(['token', 'create', '--service', 'orders', '--data-dir', dir]);
    const [tokenFile] = readdirSync(join(dir, 'tokens'));
    const damaged = join(dir, 'tokens', tokenFile as string);
    writeFileSync(damaged, '{"id": "cut sho');
    const before = Object.fromEntries(['admin-token', 'token-signing-key', 'trust-bundle.pem', 'ca/root.pem', 'ca/root.key'].map((f) => [f, readFileSync(join(dir, f), 'utf8')]));
    const err = await spawnTrellis(['control', 'run', '--data-dir', dir, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']).then(
      () => {
        throw new Error('the control plane started on a damaged data dir');
      },
      (e: unknown) => e as { exitCode: number; output: string },
    );
    expect(err.exitCode).toBe(1);
    expect(err.output).toContain(`${damaged} is damaged (not valid JSON`);
    expect(err.output).toContain('TRELLIS_STORE_CORRUPT');
    expect(readFileSync(damaged, 'utf8')).toBe('{"id": "cut sho');
    for (const [f, text] of Object.entries(before)) expect(readFileSync(join(dir, f), 'utf8')).toBe(text);
  });
});

describe('the registry follows the workloads', () => {
  const registry = async (): Promise<{ service: string; healthy: boolean; instanceId: string }[]> =>
    ((await (await fetch(`${mesh.control.ready.admin as string}/registry`)).json()) as { endpoints: { service: string; healthy: boolean; instanceId: string }[] }).endpoints;

  it('takes an instance out of the healthy set when its app fails its check, and back when it recovers', async () => {
    const inventory = await app('inventory');
    const agent = await mesh.agent({ service: 'inventory', appPort: inventory.port });
    await eventually(async () => (await registry()).some((e) => e.service === 'inventory' && e.healthy), 'inventory healthy');
    inventory.server.closeAllConnections();
    await new Promise((r) => inventory.server.close(r));
    await eventually(async () => (await registry()).some((e) => e.service === 'inventory' && !e.healthy), 'inventory unhealthy');
    await new Promise<void>((r) => inventory.server.listen(inventory.port, '127.0.0.1', r));
    await eventually(async () => (await registry()).some((e) => e.service === 'inventory' && e.healthy), 'inventory healthy again');
    // SIGTERM: the agent deregisters before it stops.
    expect(await agent.stop('SIGTERM')).toBe(0);
    expect((await registry()).some((e) => e.service === 'inventory')).toBe(false);
  });

  it('keeps an open connection working while the config changes under it', async () => {
    const { connect } = await import('node:net');
    const socket = connect({ host: '127.0.0.1', port: frontendPort });
    await new Promise((r) => socket.once('connect', r));
    const ask = (): Promise<string> => new Promise((resolve, reject) => {
      const closed = (): void => reject(new Error('the connection closed'));
      socket.once('close', closed);
      socket.once('data', (d: Buffer) => {
        socket.off('close', closed);
        resolve(d.toString());
      });
      socket.write('GET /keep HTTP/1.1\r\nhost: orders\r\n\r\n');
    });
    expect(await ask()).toContain('orders GET /keep');
    // A second orders instance joins: every caller of orders gets a delta and a config swap.
    const second = await app('orders');
    await mesh.agent({ service: 'orders', appPort: second.port });
    await eventually(async () => (await registry()).filter((e) => e.service === 'orders' && e.healthy).length === 2, 'two orders instances');
    await new Promise((r) => setTimeout(r, 300));
    expect(await ask()).toContain('orders GET /keep');
    socket.destroy();
  });
});

describe('trellis token through the API', () => {
  it('creates and revokes a token with the admin credential', async () => {
    const target = ['--control', mesh.api(), '--admin-token-file', join(mesh.dataDir, 'admin-token'), '--ca-file', join(mesh.dataDir, 'trust-bundle.pem')];
    const created = await trellis(['token', 'create', '--service', 'orders', '--ttl', '5m', ...target]);
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/^tjt1\.[\w-]+\.[\w-]+\n$/);
    const id = /join token (\S+) for default\/orders/.exec(created.stderr)?.[1] as string;
    const revoked = await trellis(['token', 'revoke', id, ...target]);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toContain(`revoked join token ${id}`);
    const wrongFile = join(mesh.dir, 'wrong-admin-token');
    writeFileSync(wrongFile, `${'x'.repeat(43)}\n`);
    const wrong = await trellis(['token', 'list', '--control', mesh.api(), '--admin-token-file', wrongFile, '--ca-file', join(mesh.dataDir, 'trust-bundle.pem')]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('TRELLIS_CONTROL_ADMIN_REQUIRED');
  });
});
