/**
 * The agent's watch client against a scripted control plane (real HTTPS, real certificates): it applies
 * a snapshot and deltas, drops a stream that sends a delta it cannot apply or goes silent, keeps the last
 * good config meanwhile, and reconnects by itself; a large snapshot in many small pieces is reassembled.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:https';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AgentSnapshot, UpstreamRef, WatchMessage } from '../../api/control-protocol.js';
import { silentLogger } from '../../common/log.js';
import type { VersionedSnapshot } from '../../agent/config-state.js';
import { ConfigWatch } from '../../agent/config-watch.js';
import { createTestPki, type TestPki, type TestWorkloadIdentity } from '../helpers/pki.js';

let pki: TestPki;
let agentCert: TestWorkloadIdentity;
let server: Server;
let port: number;
let script: (res: ServerResponse, attempt: number) => void = () => undefined;
let attempts = 0;

const snapshot: AgentSnapshot = {
  trustDomain: 'example.org', rootNamespace: 'trellis-system', zone: 'z1',
  self: { service: 'frontend', namespace: 'shop', spiffeId: 'spiffe://example.org/ns/shop/sa/frontend' },
  trustBundlePem: 'PEM', policies: [], policyRevision: 'empty',
  upstreams: [{ name: 'orders', namespace: 'shop', ports: [], endpoints: [] }],
};
const line = (m: WatchMessage): string => `${JSON.stringify(m)}\n`;

beforeAll(async () => {
  pki = await createTestPki({ trustDomain: 'example.org' });
  const control = await pki.issue('trellis-control', 'trellis-system');
  agentCert = await pki.issue('frontend', 'shop');
  server = createServer({ key: control.keyPem, cert: control.certChainPem, ca: pki.bundlePem, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    req.resume();
    req.on('end', () => {
      attempts++;
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      script(res, attempts);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

function watch(onConfig: (c: VersionedSnapshot) => void, upstreams: readonly UpstreamRef[] = [{ service: 'orders', namespace: 'shop' }]): ConfigWatch {
  return new ConfigWatch({
    endpoint: () => ({ url: new URL(`https://127.0.0.1:${port}`), trustBundlePem: pki.bundlePem, rootNamespace: 'trellis-system', trustDomain: 'example.org' }),
    clientCert: () => agentCert,
    registration: () => ({ instanceId: 'i1', address: '127.0.0.1', tunnelPort: 1, ports: [], healthy: true, upstreams, agentVersion: 't' }),
    log: silentLogger(),
    onConfig,
    onConnected: () => undefined,
    onDisconnected: () => undefined,
    backoff: { initialMs: 10, maxMs: 50 },
  });
}

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within 5 s: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('ConfigWatch', () => {
  it('applies a snapshot and deltas; a delta it cannot apply drops the stream, keeps the config, and reconnects', async () => {
    attempts = 0;
    script = (res, attempt) => {
      res.write(line({ type: 'snapshot', version: 10 * attempt, epoch: 'e', pingIntervalMs: 60_000, snapshot }));
      if (attempt === 1) {
        setTimeout(() => res.write(line({ type: 'delta', version: 11, endpoints: [{ service: 'orders', namespace: 'shop', set: { address: '10.0.0.1', tunnelPort: 15008, zone: 'z1', healthy: true } }] })), 20);
        setTimeout(() => res.write(line({ type: 'delta', version: 12, endpoints: [{ service: 'payments', namespace: 'shop', set: { address: '10.0.0.2', tunnelPort: 15008, zone: 'z1', healthy: true } }] })), 60);
      }
    };
    const configs: VersionedSnapshot[] = [];
    const w = watch((c) => configs.push(c));
    w.start();
    try {
      await until('the second stream', () => attempts >= 2 && configs.some((c) => c.version === 20));
      expect(configs.map((c) => c.version)).toEqual([10, 11, 20]);
      expect(configs[1]?.snapshot.upstreams[0]?.endpoints).toHaveLength(1);
      expect(configs.some((c) => c.snapshot.upstreams.some((u) => u.name === 'payments'))).toBe(false);
    } finally {
      w.stop();
    }
  });

  it('reassembles a large snapshot sent in many small pieces, split inside characters, with a delta in the same piece', async () => {
    attempts = 0;
    // A mesh-wide snapshot: many services, names with multi-byte characters to split inside a code point.
    const upstreams = Array.from({ length: 2_000 }, (_, i) => ({ name: `svc-${i}`, namespace: 'shop', ports: [{ port: 80, targetPort: 8080, protocol: 'http' as const, name: 'http-ünï' }], endpoints: [{ address: `10.1.${i >> 8}.${i & 255}`, tunnelPort: 15008, zone: 'z1', healthy: true }] }));
    const big = Buffer.from(line({ type: 'snapshot', version: 1, epoch: 'e', pingIntervalMs: 60_000, snapshot: { ...snapshot, upstreams } }) + line({ type: 'delta', version: 2, removedUpstreams: [{ service: 'svc-0', namespace: 'shop' }] }));
    script = (res) => {
      for (let at = 0; at < big.length; at += 997) res.write(big.subarray(at, at + 997));
    };
    const configs: VersionedSnapshot[] = [];
    const w = watch((c) => configs.push(c), [{ service: '*', namespace: '*' }]);
    w.start();
    try {
      await until('the snapshot and the delta', () => configs.at(-1)?.version === 2);
      const last = configs.at(-1)?.snapshot;
      expect(last?.upstreams).toHaveLength(1_999);
      expect(last?.upstreams[0]?.ports[0]?.name).toBe('http-ünï');
      expect(attempts).toBe(1);
    } finally {
      w.stop();
    }
  });

  it('reconnects when the control plane goes silent for three ping intervals', async () => {
    attempts = 0;
    script = (res, attempt) => res.write(line({ type: 'snapshot', version: attempt, epoch: 'e', pingIntervalMs: 50, snapshot }));
    const configs: VersionedSnapshot[] = [];
    const w = watch((c) => configs.push(c));
    w.start();
    try {
      await until('a reconnect after silence', () => attempts >= 2);
      expect(configs[0]?.version).toBe(1);
    } finally {
      w.stop();
    }
  });

  it('refuses a server that is not the control plane of this mesh', async () => {
    const impostor = await pki.issue('orders', 'shop');
    const other = createServer({ key: impostor.keyPem, cert: impostor.certChainPem }, (_req, res) => res.end());
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    const otherPort = (other.address() as AddressInfo).port;
    const { controlRequest } = await import('../../api/control-client.js');
    try {
      await expect(controlRequest({ url: new URL(`https://127.0.0.1:${otherPort}`), trustBundlePem: pki.bundlePem, rootNamespace: 'trellis-system' }, { method: 'GET', path: '/v1/trust-bundle' })).rejects.toThrow(/not a Trellis control plane of this mesh/);
    } finally {
      other.closeAllConnections();
      await new Promise((r) => other.close(r));
    }
  });
});
