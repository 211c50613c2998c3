/**
 * The serving certificate's life: the profile the API server needs (DNS SANs, serverAuth, signed by the
 * mesh CA), renewal at two thirds of its lifetime and retries on failure (fake timers), and file
 * reloading that refuses a key that does not match.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Registry } from 'prom-client';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { checkServingNames, issueServingCertificate, serviceDnsNames } from '../../injector/serving-certificate-issuer.js';
import { FileServingSource, IssuedServingSource, issuerFromDirectory, type ServingMaterial } from '../../injector/serving-certificate.js';
import { createInjectorMetrics } from '../../injector/metrics.js';
import { silentLogger } from '../../common/log.js';
import { metricValue } from './review-helpers.js';
import { requires } from '../helpers/requirements.js';

let pki: TestPki;
const issuer = () => ({ certChainPem: pki.intermediate.certChainPem, keyPem: pki.intermediate.exportKeyPem(), bundlePem: pki.bundlePem });

beforeAll(async () => {
  pki = await createTestPki();
});

describe('the serving certificate profile', () => {
  it('names the webhook Service, is for servers only, and chains to the mesh root', async () => {
    const material = await issueServingCertificate(issuer(), serviceDnsNames('trellis-injector', 'trellis-system'), 86_400_000);
    const leaf = new X509Certificate(material.certChainPem);
    expect(leaf.subjectAltName).toBe(
      'DNS:trellis-injector.trellis-system.svc, DNS:trellis-injector.trellis-system.svc.cluster.local, DNS:trellis-injector.trellis-system, DNS:trellis-injector',
    );
    expect(leaf.ca).toBe(false);
    expect(leaf.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(leaf.checkIssued(new X509Certificate(pki.intermediate.certificatePem))).toBe(true);
    expect(material.caBundlePem).toBe(pki.bundlePem);
    expect(material.notAfter.getTime() - material.notBefore.getTime()).toBeGreaterThan(86_400_000);
  });

  const openssl = requires({ tools: ['openssl'] });
  it.skipIf(openssl.skip)('verifies with openssl against the mesh root, for purpose sslserver', async () => {
    const material = await issueServingCertificate(issuer(), ['trellis-injector.trellis-system.svc'], 3_600_000);
    const dir = mkdtempSync(join(tmpdir(), 'trellis-serving-'));
    try {
      const blocks = material.certChainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
      writeFileSync(join(dir, 'leaf.pem'), blocks[0] ?? '');
      writeFileSync(join(dir, 'chain.pem'), blocks.slice(1).join(''));
      writeFileSync(join(dir, 'root.pem'), material.caBundlePem);
      const out = execFileSync('openssl', ['verify', '-purpose', 'sslserver', '-verify_hostname', 'trellis-injector.trellis-system.svc', '-CAfile', join(dir, 'root.pem'), '-untrusted', join(dir, 'chain.pem'), join(dir, 'leaf.pem')]).toString();
      expect(out).toMatch(/leaf.pem: OK/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses names that are not DNS names', () => {
    expect(() => checkServingNames(['Bad_Name'])).toThrow(/not a DNS name/);
    expect(() => checkServingNames([])).toThrow(/at least one/);
    expect(checkServingNames(['10.0.0.1', 'a.b.svc'])).toEqual(['10.0.0.1', 'a.b.svc']);
  });

  it('is clamped to the issuing CA and refused once the CA has expired', async () => {
    const far = new Date(pki.intermediate.notAfter.getTime() + 1000);
    await expect(issueServingCertificate(issuer(), ['a.svc'], 3_600_000, far)).rejects.toThrow(/expired|not valid/i);
  });
});

describe('renewal of an issued certificate', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('renews at two thirds of the lifetime and hands the new certificate over', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const registry = new Registry();
    const source = new IssuedServingSource({ loadIssuer: async () => issuer(), dnsNames: ['a.svc'], ttlMs: 3 * 3_600_000, logger: silentLogger(), metrics: createInjectorMetrics(registry) });
    const seen: ServingMaterial[] = [];
    const first = await source.start((m) => {
      seen.push(m);
    });
    try {
      const lifetime = first.notAfter.getTime() - first.notBefore.getTime();
      const renewAt = first.notBefore.getTime() + (lifetime * 2) / 3;
      await vi.advanceTimersByTimeAsync(renewAt - Date.now() - 1_000);
      expect(seen).toHaveLength(0);
      await vi.advanceTimersByTimeAsync(2_000);
      await vi.waitFor(() => expect(seen).toHaveLength(1));
      expect(seen[0]!.notAfter.getTime()).toBeGreaterThan(first.notAfter.getTime());
      expect(seen[0]!.certChainPem).not.toBe(first.certChainPem);
      expect(await metricValue(registry, 'trellis_injector_serving_certificate_reloads_total', { result: 'issued' })).toBe(2);
    } finally {
      source.stop();
    }
  });

  it('retries a failed renewal while the current certificate is still good', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    let failing = false;
    const registry = new Registry();
    const source = new IssuedServingSource({
      loadIssuer: async () => {
        if (failing) throw new Error('secret not mounted');
        return issuer();
      },
      dnsNames: ['a.svc'],
      ttlMs: 3_600_000,
      retryMs: 30_000,
      logger: silentLogger(),
      metrics: createInjectorMetrics(registry),
    });
    const seen: ServingMaterial[] = [];
    await source.start((m) => {
      seen.push(m);
    });
    try {
      failing = true;
      await vi.advanceTimersByTimeAsync(3_600_000 * (2 / 3) + 60_000);
      expect(await metricValue(registry, 'trellis_injector_serving_certificate_reloads_total', { result: 'failed' })).toBeGreaterThanOrEqual(1);
      expect(seen).toHaveLength(0);
      failing = false;
      await vi.advanceTimersByTimeAsync(30_000);
      await vi.waitFor(() => expect(seen).toHaveLength(1));
    } finally {
      source.stop();
    }
  });
});

describe('certificates from files', () => {
  let dir: string;
  afterEach(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('loads, reloads on change, and keeps the old pair when the new key does not match', async () => {
    dir = mkdtempSync(join(tmpdir(), 'trellis-files-'));
    const a = await issueServingCertificate(issuer(), ['a.svc'], 3_600_000);
    const b = await issueServingCertificate(issuer(), ['a.svc'], 3_600_000);
    const write = (cert: string, key: string) => {
      writeFileSync(join(dir, 'tls.crt'), cert);
      writeFileSync(join(dir, 'tls.key'), key, { mode: 0o600 });
      writeFileSync(join(dir, 'ca.crt'), pki.bundlePem);
    };
    write(a.certChainPem, a.keyPem);
    const registry = new Registry();
    const source = new FileServingSource({ certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key'), caBundleFile: join(dir, 'ca.crt'), pollMs: 3_600_000, logger: silentLogger(), metrics: createInjectorMetrics(registry) });
    const seen: ServingMaterial[] = [];
    const listener = (m: ServingMaterial) => {
      seen.push(m);
    };
    const first = await source.start(listener);
    try {
      expect(first.certChainPem).toBe(a.certChainPem);
      await source.poll(listener);
      expect(seen).toHaveLength(0); // unchanged files: nothing to do
      write(b.certChainPem, a.keyPem); // half-updated: the key is still the old one
      await source.poll(listener);
      expect(seen).toHaveLength(0);
      expect(await metricValue(registry, 'trellis_injector_serving_certificate_reloads_total', { result: 'failed' })).toBe(1);
      write(b.certChainPem, b.keyPem);
      await source.poll(listener);
      expect(seen.map((m) => m.certChainPem)).toEqual([b.certChainPem]);
    } finally {
      source.stop();
    }
  });

  it('refuses to start without a usable pair, naming the file', async () => {
    dir = mkdtempSync(join(tmpdir(), 'trellis-files-'));
    const source = new FileServingSource({ certFile: join(dir, 'missing.crt'), keyFile: join(dir, 'missing.key'), logger: silentLogger(), metrics: createInjectorMetrics(new Registry()) });
    await expect(source.start(() => undefined)).rejects.toMatchObject({ code: 'TRELLIS_INJECTOR_CERT_FILE', message: expect.stringContaining('missing.crt') });
  });

  it('reads an issuer directory in the layout trellis ca writes', async () => {
    dir = mkdtempSync(join(tmpdir(), 'trellis-issuer-'));
    writeFileSync(join(dir, 'ca.crt'), pki.intermediate.certChainPem);
    writeFileSync(join(dir, 'ca.key'), pki.intermediate.exportKeyPem(), { mode: 0o600 });
    writeFileSync(join(dir, 'bundle.pem'), pki.bundlePem);
    const loaded = await issuerFromDirectory(dir)();
    const material = await issueServingCertificate(loaded, ['a.svc'], 3_600_000);
    expect(material.caBundlePem).toBe(pki.bundlePem);
  });
});
