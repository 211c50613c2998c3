/**
 * The gateway in one zone routing a host and path to a service that runs only in another, real processes
 * on loopback: a global control plane, zones west and east, west's zone ingress, and `trellis gateway run`
 * joined to east. curl reaches payments (west only) through east's gateway over HTTPS; payments' sidecar
 * sees the gateway's own identity across the zones; ledger, in west too, whose policy does not let the
 * gateway call it, answers 403 naming the decision across the zones.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { allow, app, cleanup, eventually, freePort, requireBuild, tempDir, type Mesh, type Proc } from './mesh-support.js';
import { selfSigned, startGateway, type CertFiles } from './gateway-support.js';
import { joinZone, startGlobal, startIngress } from './zone-support.js';

let west: Mesh;
let east: Mesh;
let paymentsAgent: Proc;
let https: number;
let shop: CertFiles;

function curl(path: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '20', '--resolve', `shop.example.com:${https}:127.0.0.1`, '--cacert', shop.cert, '-w', '\n%{http_code}', `https://shop.example.com:${https}${path}`], (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  requireBuild();
  const dir = tempDir('trellis-gwz-');
  const global = await startGlobal();
  const gatewayId = ['trellis-gateway/gateway'];
  const policies = { 'payments.yaml': allow('payments', gatewayId), 'ledger.yaml': allow('ledger', ['billing']) };
  [west, east] = await Promise.all([joinZone(global, 'west', policies), joinZone(global, 'east', policies)]);
  await startIngress(west, await freePort());
  const [payments, ledger] = await Promise.all([app('payments-west'), app('ledger-west')]);
  paymentsAgent = await west.agent({ service: 'payments', appPort: payments.port, protocol: 'http' });
  await west.agent({ service: 'ledger', appPort: ledger.port, protocol: 'http' });
  shop = selfSigned(dir, 'shop', 'shop.example.com');
  ({ https } = await startGateway(dir, east, { shop, wildcard: selfSigned(dir, 'wild', 'wildcard.example.com', '*.example.com') }, `routes:
  - name: pay
    hosts: [shop.example.com]
    match: { path: { prefix: /pay } }
    destination: { service: payments, namespace: default }
  - name: ledger
    hosts: [shop.example.com]
    match: { path: { prefix: /ledger } }
    destination: { service: ledger, namespace: default }
`));
}, 150_000);

afterAll(cleanup);

describe('the gateway routing to another zone', { timeout: 90_000 }, () => {
  it('a host and path on east\'s gateway reach payments, which runs only in west, as the gateway', async () => {
    const r = await eventually(async () => {
      const answer = await curl('/pay/now');
      return answer.stdout.endsWith('\n200') ? answer : undefined;
    }, 'payments answers through east\'s gateway', 60_000);
    expect(r.stdout).toBe('payments-west GET /pay/now\n\n200');
    const metrics = await (await fetch(`http://127.0.0.1:${String(paymentsAgent.ready.admin)}/metrics`)).text();
    expect(metrics).toMatch(/trellis_http_requests_total\{[^}]*source="trellis-gateway\/gateway"[^}]*destination="default\/payments"/);
  });

  it('a service in the other zone whose policy does not allow the gateway answers 403 naming the decision', async () => {
    const r = await eventually(async () => {
      const answer = await curl('/ledger');
      return answer.stdout.endsWith('\n403') ? answer : undefined;
    }, 'ledger refuses the gateway across the zones', 60_000);
    expect(r.stdout).toMatch(/denied: no policy allows this caller.*\(default-deny\)/);
  });
});
