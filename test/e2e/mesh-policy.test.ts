/**
 * Policy applied live: the control plane notices an edited policy file and pushes it; the pair that is
 * no longer allowed is cut off (new calls refused) while the pair still allowed keeps working; an invalid
 * file is rejected whole and the last good policy stays in force, visible on the admin port.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { allow, app, call, cleanup, eventually, freePort, requireBuild, startMesh, type Mesh } from './mesh-support.js';

let mesh: Mesh;
let frontendPort: number;
let billingPort: number;

beforeAll(async () => {
  requireBuild();
  mesh = await startMesh({ 'orders.yaml': allow('orders', ['frontend', 'billing']) });
  const orders = await app('orders');
  frontendPort = await freePort();
  billingPort = await freePort();
  await mesh.agent({ service: 'orders', appPort: orders.port });
  await mesh.agent({ service: 'frontend', appPort: (await app('frontend')).port, upstreams: [`orders=${frontendPort}`] });
  await mesh.agent({ service: 'billing', appPort: (await app('billing')).port, upstreams: [`orders=${billingPort}`] });
  await eventually(() => call(frontendPort).then((r) => r.status === 200), 'frontend reaches orders');
  await eventually(() => call(billingPort).then((r) => r.status === 200), 'billing reaches orders');

  // Four processes start and join here; on a loaded 2-core runner that alone can pass 30 s.
}, 90_000);

afterAll(cleanup);

const refused = (port: number): Promise<boolean> => call(port, '/', 'GET', 2_000).then((r) => r.status !== 200, () => true);

describe('a policy change applied live', () => {
  it('cuts off the newly denied pair and keeps the other', async () => {
    mesh.setPolicy('orders.yaml', allow('orders', ['frontend']));
    await eventually(() => refused(billingPort), 'billing is cut off');
    expect((await call(frontendPort)).status).toBe(200);
  });

  it('rejects an invalid file whole and keeps the last good policy in force', async () => {
    mesh.setPolicy('broken.yaml', allow('orders', ['billing']).replace('action: allow', 'action: permit'));
    const admin = mesh.control.ready.admin as string;
    const ready = await eventually(async () => {
      const body = (await (await fetch(`${admin}/ready`)).json()) as { policy: { rejected?: { issues: string[] } } };
      return body.policy.rejected;
    }, 'the control plane reports the rejected file');
    expect(ready.issues.join('\n')).toMatch(/broken\.yaml:8:\d+: .*action/);
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    expect(metrics).toMatch(/^trellis_control_policy_valid 0$/m);
    // Nothing of the broken file applied: billing is still refused, frontend still allowed.
    expect(await refused(billingPort)).toBe(true);
    expect((await call(frontendPort)).status).toBe(200);
    rmSync(join(mesh.policyDir, 'broken.yaml'));
    await eventually(async () => /^trellis_control_policy_valid 1$/m.test(await (await fetch(`${admin}/metrics`)).text()), 'the policy is valid again');
  });
});
