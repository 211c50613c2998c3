/**
 * `trellis ingress run` against a real zone control plane on loopback: it joins with a join token made for
 * the zone ingress (`--ingress`: `trellis-system/trellis-ingress`, the one name of the root namespace a token
 * may carry, and only such a token), registers its public address, learns the zone's services even where
 * policy scopes discovery (but not one whose agents say --no-export: a zone without a global decides by the
 * services' own word), and carries a caller's nested session to a real agent's sidecar. No other token
 * reaches the ingress's identity: not one made like a workload's, not one written into the store by hand,
 * not an agent's token with a CSR naming it.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../../agent/agent.js';
import { startIngress, type RunningIngress } from '../../agent/ingress-run.js';
import { parseAgentArgs } from '../../cli/agent-run.js';
import { parseIngressArgs } from '../../cli/ingress.js';
import { silentLogger } from '../../common/log.js';
import { FileStore } from '../../control/file-store.js';
import { TokenService } from '../../control/token-service.js';
import { signJoinToken } from '../../control/join-token.js';
import { echoServer, closeServer, listenerPort, roundTrip, startViaIngressClient } from '../proxy/support/mesh.js';
import { issueWithToken, removeDir, startTestControlPlane, type TestControlPlane } from '../control/support.js';

let t: TestControlPlane;
let tokens: TokenService;
const stops: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const dir = mkdtempSync(join(process.env.TMPDIR ?? '/tmp', 'trellis-ingress-'));
  const policy = join(dir, 'policy');
  // Discovery is scoped (the default): only web may call api, and nothing names the ingress.
  (await import('node:fs')).mkdirSync(policy);
  writeFileSync(join(policy, 'api.yaml'), 'apiVersion: trellis.dev/v1alpha1\nkind: TrafficPermission\nmetadata: { name: allow-web, namespace: shop }\nspec:\n  destination: api\n  mode: enforce\n  rules:\n    - action: allow\n      from: [web]\n');
  t = await startTestControlPlane({ policyDir: policy }, dir);
  tokens = new TokenService(await FileStore.open(join(t.dir, 'data')), 'trellis.local');
});

afterAll(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
  await t.close();
  removeDir(t.dir);
});

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('trellis ingress run', () => {
  it('refuses bad flags with every problem named', () => {
    expect(() => parseIngressArgs(['--control', 'http://x', '--public-address', '0.0.0.0:1', '--admit-zone', 'Bad_Zone', '--refuse-identity', 'nope'])).toThrow(
      /--control must be an https:\/\/ URL[\s\S]*--token-file is required[\s\S]*--public-address must be an address other zones can dial[\s\S]*--admit-zone: "Bad_Zone"[\s\S]*nope/,
    );
  });

  it('joins as trellis-system/trellis-ingress, registers its public address and carries a nested call to a real agent', async () => {
    const dir = mkdtempSync(join(t.dir, 'run-'));
    writeFileSync(join(dir, 'ca.pem'), t.cp.trustBundlePem);
    writeFileSync(join(dir, 'api.token'), (await tokens.create('api', 'shop', 3_600_000)).token);
    writeFileSync(join(dir, 'vault.token'), (await tokens.create('vault', 'shop', 3_600_000)).token);
    writeFileSync(join(dir, 'ingress.token'), (await tokens.create('trellis-ingress', 'trellis-system', 3_600_000, 1, 'ingress')).token);

    const app = await echoServer();
    stops.push(() => closeServer(app.server, app.sockets));
    const apiArgs = parseAgentArgs(['--control', t.endpoint.url.toString(), '--ca-file', join(dir, 'ca.pem'), '--token-file', join(dir, 'api.token'), '--service', 'api', '--namespace', 'shop',
      '--app-port', String(app.port), '--address', '127.0.0.1', '--tunnel', '127.0.0.1:0', '--admin', 'off', '--no-access-log', '--log-level', 'silent']).config;
    const api: RunningAgent = await startAgent(apiArgs, silentLogger());
    stops.push(() => api.stop(0));
    const vaultArgs = parseAgentArgs(['--control', t.endpoint.url.toString(), '--ca-file', join(dir, 'ca.pem'), '--token-file', join(dir, 'vault.token'), '--service', 'vault', '--namespace', 'shop',
      '--app-port', String(app.port), '--address', '127.0.0.1', '--tunnel', '127.0.0.1:0', '--admin', 'off', '--no-access-log', '--log-level', 'silent', '--no-export']).config;
    const vault: RunningAgent = await startAgent(vaultArgs, silentLogger());
    stops.push(() => vault.stop(0));
    await until(() => t.cp.registry.hasMeshService('shop', 'vault'), 'vault registered');

    const { config } = parseIngressArgs(['--control', t.endpoint.url.toString(), '--ca-file', join(dir, 'ca.pem'), '--token-file', join(dir, 'ingress.token'),
      '--listen', '127.0.0.1:0', '--public-address', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
    const ingress: RunningIngress = await startIngress(config, silentLogger());
    stops.push(() => ingress.stop(0));
    const ingressPort = ingress.addresses().ingress!.port;

    // Registered at its public address as an endpoint of the ingress service, and its table has api.
    await until(() => t.cp.registry.hasMeshService('trellis-system', 'trellis-ingress'), 'the ingress registered');
    expect(t.cp.registry.upstream('trellis-system', 'trellis-ingress').endpoints.map((e) => `${e.address}:${e.tunnelPort}`)).toEqual([`127.0.0.1:${ingressPort}`]);
    await until(() => ingress.ready(), 'the first table');
    const adminPort = ingress.addresses().admin!.port;
    await until(async () => ((await (await fetch(`http://127.0.0.1:${adminPort}/config`)).json()) as { services: number }).services >= 1, 'api in the ingress table');
    // api only: vault (--no-export) is not the ingress's to forward to, in a zone without a global too.
    expect(((await (await fetch(`http://127.0.0.1:${adminPort}/config`)).json()) as { services: number }).services).toBe(1);

    const webToken = (await tokens.create('web', 'shop', 3_600_000)).token;
    const issued = await issueWithToken(t.endpoint, webToken, 'spiffe://trellis.local/ns/shop/sa/web');
    const web = { certChainPem: issued.certChainPem, keyPem: issued.keyPem, trustBundlePem: t.cp.trustBundlePem };
    const client = await startViaIngressClient(web, app.port, ingressPort, 'default', 'trellis.local');
    stops.push(() => client.stop(0));
    const result = await roundTrip(listenerPort(client), 'across the zone ingress');
    expect(result.data.toString()).toBe('across the zone ingress');

    // Stopped: it deregisters, so the zone withdraws the address at once.
    await ingress.stop(0);
    await until(() => !t.cp.registry.hasMeshService('trellis-system', 'trellis-ingress'), 'the ingress deregistered');
  });

  it('a join token in the root namespace is still refused for any other name', async () => {
    await expect(tokens.create('trellis-control', 'trellis-system', 60_000)).rejects.toMatchObject({ code: 'TRELLIS_IDENTITY_RESERVED' });
    await expect(tokens.create('trellis-ingress-2', 'trellis-system', 60_000)).rejects.toMatchObject({ code: 'TRELLIS_IDENTITY_RESERVED' });
    await expect(tokens.create('trellis-ingress', 'shop', 60_000)).resolves.toBeDefined();
  });

  it("the ingress's identity comes only from a token made for it: not a workload-style token, not an ingress token for another name", async () => {
    await expect(tokens.create('trellis-ingress', 'trellis-system', 60_000)).rejects.toMatchObject({ code: 'TRELLIS_IDENTITY_RESERVED', message: expect.stringMatching(/--ingress/) as unknown });
    await expect(tokens.create('api', 'shop', 60_000, 1, 'ingress')).rejects.toMatchObject({ code: 'TRELLIS_IDENTITY_RESERVED' });
    await expect(tokens.create('trellis-control', 'trellis-system', 60_000, 1, 'ingress')).rejects.toMatchObject({ code: 'TRELLIS_IDENTITY_RESERVED' });
  });

  it('a token for the ingress written into the store by hand (no role), or with its role stripped from the record, is refused at the API', async () => {
    const store = await FileStore.open(join(t.dir, 'data'));
    const key = await store.secret('token-signing-key');
    const now = Math.floor(Date.now() / 1000);
    const record = { id: 'handmade-ingress', service: 'trellis-ingress', namespace: 'trellis-system', createdAt: new Date().toISOString(), expiresAt: new Date(Date.now() + 600_000).toISOString(), uses: 1, usesLeft: 1, certificates: [] };
    await store.putToken(record);
    const handmade = signJoinToken({ id: record.id, trustDomain: 'trellis.local', namespace: 'trellis-system', service: 'trellis-ingress', issuedAt: now, expiresAt: now + 600 }, key);
    await expect(issueWithToken(t.endpoint, handmade, 'spiffe://trellis.local/ns/trellis-system/sa/trellis-ingress')).rejects.toMatchObject({ code: 'TRELLIS_IDENTITY_RESERVED' });
    // A real ingress token whose record lost its role (edited by hand) no longer matches its signed claims.
    const made = await tokens.create('trellis-ingress', 'trellis-system', 600_000, 1, 'ingress');
    const { role: _role, ...stripped } = made.record;
    await store.putToken(stripped);
    await expect(issueWithToken(t.endpoint, made.token, 'spiffe://trellis.local/ns/trellis-system/sa/trellis-ingress')).rejects.toMatchObject({ code: 'TRELLIS_TOKEN_MISMATCH' });
  });

  it("an agent's token with a CSR naming the ingress (or the control plane) is refused; with its own name it gets that", async () => {
    for (const asked of ['spiffe://trellis.local/ns/trellis-system/sa/trellis-ingress', 'spiffe://trellis.local/ns/trellis-system/sa/trellis-control']) {
      await expect(issueWithToken(t.endpoint, (await tokens.create('vm', 'shop', 60_000)).token, asked)).rejects.toMatchObject({ code: 'TRELLIS_TOKEN_WRONG_SERVICE' });
    }
    const issued = await issueWithToken(t.endpoint, (await tokens.create('vm', 'shop', 60_000)).token, 'spiffe://trellis.local/ns/shop/sa/vm');
    expect(new X509Certificate(issued.certChainPem).subjectAltName).toBe('URI:spiffe://trellis.local/ns/shop/sa/vm');
  });
});
