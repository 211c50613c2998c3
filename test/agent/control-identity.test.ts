/**
 * Whom an agent hands its join token to: only a server that presents the control plane's own identity
 * (`spiffe://<td>/ns/<root-namespace>/sa/trellis-control`), chained to the mesh trust bundle. Pinned after
 * a join token for `trellis-system/trellis-control` gave a workload a certificate that impersonated the
 * control plane to a new agent, which sent it its join token. Real TLS on loopback; the fake servers
 * record every byte they decrypt, so "refused before the token is sent" is checked, not assumed.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { once } from 'node:events';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { IdentityManager } from '../../agent/identity-manager.js';
import { silentLogger } from '../../common/log.js';
import { createTestPki, type TestPki, type TestWorkloadIdentity } from '../helpers/pki.js';

const TOKEN = 'tjt1.eyJ2IjoxfQ.c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1sZWFr';

let pki: TestPki;
let foreign: TestPki;
let federated: TestPki;
beforeAll(async () => {
  pki = await createTestPki({ trustDomain: 'example.org' });
  foreign = await createTestPki({ trustDomain: 'example.org' });
  federated = await createTestPki({ trustDomain: 'partner.example' });
});

interface FakeServer {
  readonly server: Server;
  readonly port: number;
  /** Everything any client sent, decrypted. */
  received(): string;
}

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await new Promise((r) => server.close(r));
});

async function fakeServer(identity: TestWorkloadIdentity): Promise<FakeServer> {
  const chunks: Buffer[] = [];
  const server = createServer({ cert: identity.certChainPem, key: identity.keyPem, minVersion: 'TLSv1.3' }, (socket: TLSSocket) => {
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      socket.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    });
  });
  server.on('tlsClientError', () => undefined);
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, received: () => Buffer.concat(chunks).toString('latin1') };
}

function agentTowards(port: number, trustBundlePem = pki.bundlePem): IdentityManager {
  return new IdentityManager({
    endpoint: () => ({ url: new URL(`https://127.0.0.1:${port}`), trustBundlePem, rootNamespace: 'trellis-system' }),
    readToken: async () => TOKEN,
    wantedId: () => 'spiffe://example.org/ns/shop/sa/orders',
    log: silentLogger(),
    onRenewed: () => undefined,
  });
}

async function settle(fake: FakeServer): Promise<void> {
  // Give any bytes the client might have sent time to arrive before asserting they did not.
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 50));
  void fake;
}

describe('the agent verifies the control plane before it sends its join token', () => {
  it('refuses a server with a valid mesh workload certificate of another service; the token never reaches it', async () => {
    const fake = await fakeServer(await pki.issue('orders', 'shop'));
    await expect(agentTowards(fake.port).issueWithToken()).rejects.toThrow(/not a Trellis control plane of this mesh/);
    await settle(fake);
    expect(fake.received()).not.toContain('c2VjcmV0');
    expect(fake.received()).toBe('');
  });

  it('refuses a workload of the root namespace that is not the control plane', async () => {
    const fake = await fakeServer(await pki.issue('trellis-injector', 'trellis-system'));
    await expect(agentTowards(fake.port).issueWithToken()).rejects.toThrow(/not a Trellis control plane of this mesh/);
    await settle(fake);
    expect(fake.received()).toBe('');
  });

  it('refuses the control plane\'s SPIFFE ID from a CA outside the trust bundle', async () => {
    const fake = await fakeServer(await foreign.issue('trellis-control', 'trellis-system'));
    await expect(agentTowards(fake.port).issueWithToken()).rejects.toThrow(/TRELLIS_CONTROL_UNREACHABLE|certificate/);
    await settle(fake);
    expect(fake.received()).toBe('');
  });

  it('refuses another trust domain\'s control plane, even one whose root the bundle holds (federation)', async () => {
    const fake = await fakeServer(await federated.issue('trellis-control', 'trellis-system'));
    await expect(agentTowards(fake.port, pki.bundlePem + federated.bundlePem).issueWithToken()).rejects.toThrow(/not a Trellis control plane of this mesh/);
    await settle(fake);
    expect(fake.received()).toBe('');
  });

  it('sends the token to the control plane\'s identity from the mesh CA (the fake server can see a token)', async () => {
    const fake = await fakeServer(await pki.issue('trellis-control', 'trellis-system'));
    await expect(agentTowards(fake.port).issueWithToken()).rejects.toThrow(/503/);
    expect(fake.received()).toContain(`Bearer ${TOKEN}`);
  });
});
