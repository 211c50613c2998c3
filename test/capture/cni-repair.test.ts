/**
 * The node agent's repair against a fake API server (real HTTPS, the API's JSON): a marked pod on this
 * node with an IP and no plugin record is deleted (with a uid precondition) for its controller to create
 * again; a recorded pod, a young one, an unmarked one, one on another node, one without IP and a bare pod
 * (reported, never deleted) are left alone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { createTestPki } from '../helpers/pki.js';
import { issueServingCertificate } from '../../injector/serving-certificate-issuer.js';
import { startFakeKubeApi, type FakeKubeApi } from '../injector/fake-kube-api.js';
import { makeTrellisApiClient } from '../../common/kubernetes-client.js';
import { repairPass } from '../../capture/cni/repair.js';

const NOW = Date.parse('2026-12-07T12:00:00Z');
let api: FakeKubeApi;
let stateDir = '';

function pod(name: string, uid: string, options: { node?: string; marked?: boolean; ip?: string | null; ageMs?: number; owned?: boolean } = {}): Record<string, unknown> {
  return {
    kind: 'Pod',
    apiVersion: 'v1',
    metadata: {
      name,
      namespace: 'shop',
      uid,
      creationTimestamp: new Date(NOW - (options.ageMs ?? 60_000)).toISOString().replace(/\.\d+Z$/, 'Z'),
      annotations: options.marked === false ? {} : { 'trellis.dev/capture': 'cni', 'trellis.dev/status': '{}' },
      ...(options.owned === false ? {} : { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-7c9f8d', uid: 'rs-uid', controller: true, blockOwnerDeletion: true }] }),
    },
    spec: { nodeName: options.node ?? 'node-a', containers: [{ name: 'web', image: 'registry.example.com/web:1' }] },
    status: { phase: 'Running', ...(options.ip === null ? {} : { podIP: options.ip ?? '10.244.1.7', podIPs: [{ ip: options.ip ?? '10.244.1.7' }] }) },
  };
}

beforeAll(async () => {
  const pki = await createTestPki();
  const cert = await issueServingCertificate({ certChainPem: pki.intermediate.certChainPem, keyPem: pki.intermediate.exportKeyPem(), bundlePem: pki.bundlePem }, ['127.0.0.1'], 3_600_000);
  api = await startFakeKubeApi(cert);
  stateDir = mkdtempSync(join(tmpdir(), 'trellis-cni-state-'));
});

afterAll(async () => {
  await api?.close();
  if (stateDir !== '') rmSync(stateDir, { recursive: true, force: true });
});

describe('repair of pods that started without the plugin', () => {
  it('deletes exactly the marked, networked, controlled pods of this node that the plugin never set up', async () => {
    const cases: [string, Record<string, unknown>][] = [
      ['shop/missed', pod('missed', 'aaaaaaaa-0000-4000-8000-000000000001')],
      ['shop/recorded', pod('recorded', 'aaaaaaaa-0000-4000-8000-000000000002')],
      ['shop/young', pod('young', 'aaaaaaaa-0000-4000-8000-000000000003', { ageMs: 2_000 })],
      ['shop/plain', pod('plain', 'aaaaaaaa-0000-4000-8000-000000000004', { marked: false })],
      ['shop/elsewhere', pod('elsewhere', 'aaaaaaaa-0000-4000-8000-000000000005', { node: 'node-b' })],
      ['shop/no-ip', pod('no-ip', 'aaaaaaaa-0000-4000-8000-000000000006', { ip: null })],
      ['shop/bare', pod('bare', 'aaaaaaaa-0000-4000-8000-000000000007', { owned: false })],
    ];
    for (const [key, value] of cases) api.pods.set(key, value);
    writeFileSync(join(stateDir, 'aaaaaaaa-0000-4000-8000-000000000002.json'), '{}');
    const report = await repairPass({ api: makeTrellisApiClient(api.kubeConfig(), CoreV1Api, 'cni'), nodeName: 'node-a', stateDir, minAgeMs: 15_000, now: () => NOW });
    expect(report).toEqual({ deleted: ['shop/missed'], unrepairable: ['shop/bare'] });
    expect([...api.pods.keys()].sort()).toEqual(['shop/bare', 'shop/elsewhere', 'shop/no-ip', 'shop/plain', 'shop/recorded', 'shop/young']);
    const list = api.requests.find((r) => r.path === '/api/v1/pods');
    expect(list?.query.fieldSelector).toBe('spec.nodeName=node-a');
    const deletion = api.requests.find((r) => r.method === 'DELETE');
    expect(deletion?.body).toMatchObject({ preconditions: { uid: 'aaaaaaaa-0000-4000-8000-000000000001' } });
    expect(deletion?.userAgent).toMatch(/^trellis-cni\//);
  });

  it('does not delete a successor that took the name (uid precondition), and lets the next pass retry', async () => {
    api.pods.set('shop/missed', pod('missed', 'bbbbbbbb-0000-4000-8000-000000000001'));
    const stale = { listPodForAllNamespaces: async () => ({ items: [pod('missed', 'aaaaaaaa-0000-4000-8000-000000000001')] }), deleteNamespacedPod: makeTrellisApiClient(api.kubeConfig(), CoreV1Api, 'cni').deleteNamespacedPod.bind(makeTrellisApiClient(api.kubeConfig(), CoreV1Api, 'cni')) };
    const report = await repairPass({ api: stale as never, nodeName: 'node-a', stateDir, minAgeMs: 15_000, now: () => NOW });
    expect(report.deleted).toEqual([]);
    expect(api.pods.has('shop/missed')).toBe(true);
  });
});
