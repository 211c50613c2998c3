/**
 * Real TLS 1.3 handshakes over loopback with certificates from the CA: both sides present a certificate,
 * node:tls checks the chain against the trust bundle, and each side reads the other's SPIFFE ID.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { verifyPeerCertificate, type PeerIdentity } from '../../ca/verify.js';
import { createTestPki, type TestPki, type TestWorkloadIdentity } from '../helpers/pki.js';

interface HandshakeResult {
  readonly serverSaw: PeerIdentity;
  readonly clientSaw: PeerIdentity;
  readonly protocol: string | null;
}

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

function listen(identity: TestWorkloadIdentity, caPem: string, trustDomain: string, onPeer: (peer: PeerIdentity | Error) => void): Promise<number> {
  const server = createServer(
    { cert: identity.certChainPem, key: identity.keyPem, ca: caPem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3', handshakeTimeout: 5_000 },
    (socket) => {
      try {
        onPeer(verifyPeerCertificate(socket.getPeerX509Certificate() as NonNullable<ReturnType<TLSSocket['getPeerX509Certificate']>>, { trustDomain }));
      } catch (err) {
        onPeer(err as Error);
      }
      socket.end('ok');
    },
  );
  // A client the server refuses: the handshake error is the server's verdict.
  server.on('tlsClientError', (err) => onPeer(err));
  servers.push(server);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

async function handshake(server: TestWorkloadIdentity, client: TestWorkloadIdentity, pki: { bundlePem: string; trustDomain: string }, clientCaPem = pki.bundlePem): Promise<HandshakeResult> {
  let settleServer: (peer: PeerIdentity | Error) => void = () => undefined;
  const serverVerdict = new Promise<PeerIdentity | Error>((resolve) => (settleServer = resolve));
  const port = await listen(server, pki.bundlePem, pki.trustDomain, (peer) => settleServer(peer));
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      cert: client.certChainPem,
      key: client.keyPem,
      ca: clientCaPem,
      minVersion: 'TLSv1.3',
      // The server is named by its SPIFFE ID, not a host name: the ID check below replaces host name checks.
      checkServerIdentity: () => undefined,
    });
    // Client-side errors (a server it does not trust) settle first; otherwise the server's verdict decides.
    socket.on('error', (err) => void serverVerdict.then((v) => reject(v instanceof Error ? v : err)));
    socket.on('secureConnect', () => {
      let clientSaw: PeerIdentity;
      try {
        clientSaw = verifyPeerCertificate(socket.getPeerX509Certificate() as NonNullable<ReturnType<TLSSocket['getPeerX509Certificate']>>, { trustDomain: pki.trustDomain });
      } catch (err) {
        socket.destroy();
        reject(err);
        return;
      }
      const protocol = socket.getProtocol();
      socket.on('data', () => undefined);
      socket.on('close', () => {
        void serverVerdict.then((serverSaw) => (serverSaw instanceof Error ? reject(serverSaw) : resolve({ serverSaw, clientSaw, protocol })));
      });
    });
  });
}

/** Why node:tls refuses a client: a server that accepts everyone and reports `authorizationError`. */
async function authorizationError(server: TestWorkloadIdentity, client: TestWorkloadIdentity, caPem: string): Promise<string | undefined> {
  let report: (code: string | undefined) => void = () => undefined;
  const verdict = new Promise<string | undefined>((resolve) => (report = resolve));
  const srv = createServer({ cert: server.certChainPem, key: server.keyPem, ca: caPem, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, (socket) => {
    report(socket.authorized ? undefined : String(socket.authorizationError));
    socket.destroy();
  });
  servers.push(srv);
  const port = await new Promise<number>((resolve) => srv.listen(0, '127.0.0.1', () => resolve((srv.address() as AddressInfo).port)));
  const socket = connect({ host: '127.0.0.1', port, cert: client.certChainPem, key: client.keyPem, ca: caPem, checkServerIdentity: () => undefined });
  socket.on('error', () => undefined);
  try {
    return await verdict;
  } finally {
    socket.destroy();
  }
}

describe('mTLS 1.3 with X.509-SVIDs', () => {
  let pki: TestPki;
  let cart: TestWorkloadIdentity;
  let payments: TestWorkloadIdentity;
  beforeAll(async () => {
    pki = await createTestPki({ trustDomain: 'mesh.test' });
    cart = await pki.issue('cart', 'shop');
    payments = await pki.issue('payments', 'bank');
  });

  it('cart calls payments: each side reads the other SPIFFE ID', async () => {
    const result = await handshake(payments, cart, pki);
    expect(result.protocol).toBe('TLSv1.3');
    expect(result.serverSaw).toMatchObject({ spiffeId: 'spiffe://mesh.test/ns/shop/sa/cart', namespace: 'shop', service: 'cart', trustDomain: 'mesh.test' });
    expect(result.clientSaw).toMatchObject({ spiffeId: 'spiffe://mesh.test/ns/bank/sa/payments', namespace: 'bank', service: 'payments' });
    expect(result.serverSaw.notAfter.getTime()).toBe(cart.notAfter.getTime());
  });

  it('payments calls cart: the other direction', async () => {
    const result = await handshake(cart, payments, pki);
    expect(result.serverSaw.spiffeId).toBe('spiffe://mesh.test/ns/bank/sa/payments');
    expect(result.clientSaw.spiffeId).toBe('spiffe://mesh.test/ns/shop/sa/cart');
  });

  it('a client from another trust domain is never accepted, for want of a chain to the bundle', async () => {
    const foreign = await createTestPki({ trustDomain: 'other.test' });
    const intruder = await foreign.issue('cart', 'shop');
    // node:tls with rejectUnauthorized destroys the socket before the connection callback: the server never sees it.
    await expect(handshake(payments, intruder, pki)).rejects.toThrow(/socket hang up/);
    expect(await authorizationError(payments, intruder, pki.bundlePem)).toBe('UNABLE_TO_GET_ISSUER_CERT_LOCALLY');
  });

  it('a peer of another trust domain whose root is trusted is still refused by the SPIFFE check', async () => {
    const foreign = await createTestPki({ trustDomain: 'other.test' });
    const intruder = await foreign.issue('cart', 'shop');
    const both = { bundlePem: pki.bundlePem + foreign.bundlePem, trustDomain: 'mesh.test' };
    await expect(handshake(payments, intruder, both)).rejects.toMatchObject({ code: 'TRELLIS_PEER_TRUST_DOMAIN', side: 'downstream' });
  });

  it('an expired client certificate fails the handshake', async () => {
    const expired = await pki.issue('cart', 'shop', { notBefore: new Date(Date.now() - 2 * 3_600_000), notAfter: new Date(Date.now() - 3_600_000) });
    await expect(handshake(payments, expired, pki)).rejects.toThrow(/socket hang up/);
    expect(await authorizationError(payments, expired, pki.bundlePem)).toBe('CERT_HAS_EXPIRED');
  });
});
