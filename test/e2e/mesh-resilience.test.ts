/**
 * The mesh when things go wrong, as real processes: the control plane killed and restarted under steady
 * load; certificates rotating every few seconds under load; an agent restarted while the control plane is
 * down, serving from the snapshot and certificate it saved. Each counts every failed request: zero allowed.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { allow, app, call, cleanup, eventually, freePort, requireBuild, startMesh, steadyLoad, tempDir, type Mesh, type Proc } from './mesh-support.js';

let mesh: Mesh;
let frontendPort: number;

async function twoServices(controlArgs: readonly string[] = [], frontendDataDir?: string): Promise<Proc> {
  mesh = await startMesh({ 'orders.yaml': allow('orders', ['frontend']) }, controlArgs);
  const orders = await app('orders');
  frontendPort = await freePort();
  await mesh.agent({ service: 'orders', appPort: orders.port, dataDir: join(mesh.dir, 'agent-orders') });
  const frontend = await mesh.agent({ service: 'frontend', appPort: (await app('frontend')).port, upstreams: [`orders=${frontendPort}`], ...(frontendDataDir === undefined ? {} : { dataDir: frontendDataDir }) });
  await eventually(() => call(frontendPort).then((r) => r.status === 200), 'frontend reaches orders');
  return frontend;
}

const metric = async (adminPort: unknown, name: string): Promise<number> => {
  const text = await (await fetch(`http://127.0.0.1:${String(adminPort)}/metrics`)).text();
  const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return match === null ? Number.NaN : Number(match[1]);
};

beforeEach(requireBuild);
afterEach(cleanup);

describe('control plane killed and restarted', { timeout: 60_000 }, () => {
  it('loses no request under steady load', async () => {
    await twoServices();
    const load = steadyLoad(frontendPort);
    await new Promise((r) => setTimeout(r, 500));
    expect(await mesh.control.stop('SIGKILL')).toBe(null);
    await new Promise((r) => setTimeout(r, 1_500));
    await mesh.startControl();
    await new Promise((r) => setTimeout(r, 2_500));
    const { ok, failures } = await load.stop();
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(20);
    // The agents found the restarted control plane by themselves.
    const admin = mesh.control.ready.admin as string;
    await eventually(async () => ((await (await fetch(`${admin}/ready`)).json()) as { agents: number }).agents === 2, 'both agents reconnected');
  });
});

describe('certificate rotation under load', { timeout: 60_000 }, () => {
  it('rotates every few seconds with zero failed requests', async () => {
    await twoServices(['--workload-ttl', '4s']);
    const load = steadyLoad(frontendPort);
    await new Promise((r) => setTimeout(r, 7_000));
    const { ok, failures } = await load.stop();
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(50);
    const registry = (await (await fetch(`${mesh.control.ready.admin as string}/metrics`)).text());
    const renewed = Number(/^trellis_control_certificates_total\{kind="renew",result="ok"\} (\d+)$/m.exec(registry)?.[1] ?? 0);
    expect(renewed).toBeGreaterThanOrEqual(4);
  });
});

describe('agent restarted while the control plane is down', { timeout: 60_000 }, () => {
  it('serves from its saved snapshot and certificate, and says so', async () => {
    const frontendDir = join(tempDir('trellis-agent-'), 'frontend');
    const first = await twoServices([], frontendDir);
    // Let the agent save its snapshot (writes are coalesced to one per second).
    await new Promise((r) => setTimeout(r, 1_200));
    await mesh.control.stop('SIGKILL');
    expect(await first.stop('SIGTERM')).toBe(0);
    // The key was written only because --data-dir asked for it, and only for its owner.
    expect(statSync(join(frontendDir, 'identity', 'key.pem')).mode & 0o777).toBe(0o600);
    // No join token on the restart: the saved certificate is all it has.
    const restarted = await mesh.agent({ service: 'frontend', appPort: (await app('frontend2')).port, upstreams: [`orders=${frontendPort}`], dataDir: frontendDir, tokenFile: join(mesh.dir, 'no-such-token') });
    const res = await eventually(() => call(frontendPort).catch(() => undefined), 'the restarted agent serves');
    expect(res).toEqual({ status: 200, body: 'orders GET /\n' });
    const status = (await (await fetch(`http://127.0.0.1:${String(restarted.ready.admin)}/ready`)).json()) as { ready: boolean; controlPlane: { connected: boolean; servingLastConfig: boolean }; config: { stale: boolean; restoredFromDisk: boolean } };
    expect(status.ready).toBe(true);
    expect(status.controlPlane).toMatchObject({ connected: false, servingLastConfig: true });
    expect(status.config).toMatchObject({ stale: true, restoredFromDisk: true });
    expect(await metric(restarted.ready.admin, 'trellis_agent_config_stale')).toBe(1);
    expect(await metric(restarted.ready.admin, 'trellis_agent_control_plane_connected')).toBe(0);
  });
});
