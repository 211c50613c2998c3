/**
 * OpenSSL, an implementation independent of ours, agrees with what the CA issues: `openssl verify` accepts the
 * chains (for TLS client and server purposes) and refuses the broken ones, `openssl x509 -text` shows the
 * SPIFFE profiles, and a CA made by openssl works as an operator-supplied (plug-in) CA.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, chmodSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requires } from '../helpers/requirements.js';
import { CertificateAuthority, createRootCa } from '../../ca/authority.js';
import { certificatePem, parseCertificatesPem } from '../../ca/certificate.js';
import { createCsr, generateWorkloadKey } from '../../ca/csr.js';
import { importPrivateKeyPem, signatureAlgorithmFor, spkiDer } from '../../ca/keys.js';
import { keyIdentifier, leafProfile, leafTemplate, signCertificate } from '../../ca/profile.js';
import { parseSpiffeId } from '../../ca/spiffe-id.js';
import { verifyChain } from '../../ca/verify.js';

const need = requires({ tools: ['openssl'] });
const ID = parseSpiffeId('spiffe://example.org/ns/shop/sa/cart');
const HOUR = 3_600_000;

describe.skipIf(need.skip)('openssl agrees with the CA', () => {
  let dir: string;
  let root: CertificateAuthority;
  let zone: CertificateAuthority;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'trellis-openssl-'));
    root = await createRootCa({ trustDomain: 'example.org' });
    zone = await root.createIntermediate({ name: 'zone-a' });
    writeFileSync(join(dir, 'root.pem'), root.bundle.toPem());
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function file(name: string, content: string): string {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  }

  /** `openssl verify` of a chain file (leaf first); returns its exit status and output. */
  function opensslVerify(chainPem: string, purpose: string, caFile = join(dir, 'root.pem')): { ok: boolean; output: string } {
    const chain = file(`chain-${Math.random().toString(16).slice(2)}.pem`, chainPem);
    const leaf = file(`leaf-${Math.random().toString(16).slice(2)}.pem`, certificatePem(parseCertificatesPem(chainPem, 'chain')[0]?.der as Buffer));
    const result = spawnSync('openssl', ['verify', '-x509_strict', '-purpose', purpose, '-CAfile', caFile, '-untrusted', chain, leaf], { encoding: 'utf8' });
    return { ok: result.status === 0, output: `${result.stdout}${result.stderr}` };
  }

  function text(pem: string): string {
    return execFileSync('openssl', ['x509', '-noout', '-text'], { input: pem, encoding: 'utf8' });
  }

  it('verifies a signed CSR chain for both TLS client and server use', async () => {
    const signed = await zone.signCsr(await createCsr(await generateWorkloadKey(), ID), ID);
    expect(opensslVerify(signed.certChainPem, 'sslclient')).toMatchObject({ ok: true });
    expect(opensslVerify(signed.certChainPem, 'sslserver')).toMatchObject({ ok: true });
  });

  it('openssl req -verify accepts our CSRs', async () => {
    const csr = await createCsr(await generateWorkloadKey(), ID);
    const out = spawnSync('openssl', ['req', '-verify', '-noout', '-text'], { input: csr, encoding: 'utf8' });
    expect(out.status).toBe(0);
    expect(`${out.stdout}${out.stderr}`).toMatch(/verify OK/);
    expect(out.stdout).toContain('URI:spiffe://example.org/ns/shop/sa/cart');
  });

  it('shows the leaf profile in openssl x509 -text', async () => {
    const issued = await zone.issueWorkload(ID);
    const t = text(issued.certChainPem);
    expect(t).toMatch(/Subject: *\n/);
    expect(t).toMatch(/X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\/example.org\/ns\/shop\/sa\/cart\n/);
    expect(t).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(t).toMatch(/X509v3 Key Usage: critical\s+Digital Signature\n/);
    expect(t).toMatch(/X509v3 Extended Key Usage: *\s+TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(t).toContain('ASN1 OID: prime256v1');
    expect(t).toContain('Signature Algorithm: ecdsa-with-SHA256');
  });

  it('shows the CA profile in openssl x509 -text', () => {
    const t = text(zone.certificatePem);
    expect(t).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(t).toMatch(/X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign\n/);
    expect(text(root.certificatePem)).toMatch(/CA:TRUE, pathlen:1/);
  });

  it('refuses what our verifier refuses: a foreign chain, a leaf used as a CA, an expired leaf', async () => {
    const foreignRoot = await createRootCa({ trustDomain: 'other.org' });
    const foreign = await (await foreignRoot.createIntermediate({ name: 'zone-x' })).issueWorkload(parseSpiffeId('spiffe://other.org/ns/a/sa/b'));
    expect(opensslVerify(foreign.certChainPem, 'sslclient')).toMatchObject({ ok: false, output: expect.stringMatching(/unable to get local issuer certificate/) });

    const victim = await zone.issueWorkload(ID);
    const leaf = parseCertificatesPem(victim.certChainPem, 'x')[0];
    if (leaf === undefined) throw new Error('no leaf');
    const key = importPrivateKeyPem(victim.keyPem);
    const forgedDer = signCertificate(
      leafTemplate(leafProfile(leaf.subjectName, keyIdentifier(leaf.spki)), 'spiffe://example.org/ns/x/sa/admin', spkiDer((await generateWorkloadKey()).publicKey), new Date(Date.now() - HOUR), new Date(Date.now() + HOUR)),
      key,
      signatureAlgorithmFor(key),
    );
    const forged = certificatePem(forgedDer) + victim.certChainPem;
    expect(opensslVerify(forged, 'sslclient').ok).toBe(false);
    expect(() => verifyChain(forged, root.bundle)).toThrow(expect.objectContaining({ code: 'TRELLIS_CHAIN_ISSUER_NOT_CA' }));

    const expired = await zone.issueWorkload(ID, { notBefore: new Date(Date.now() - 2 * HOUR), notAfter: new Date(Date.now() - HOUR) });
    expect(opensslVerify(expired.certChainPem, 'sslclient')).toMatchObject({ ok: false, output: expect.stringMatching(/certificate has expired/) });
  });

  it('issues under an operator-supplied CA made by openssl (RSA-2048 root, ECDSA intermediate)', async () => {
    const plug = join(dir, 'plugin');
    execFileSync('mkdir', ['-p', plug]);
    const conf = file(
      'ext.cnf',
      ['[root]', 'basicConstraints=critical,CA:true', 'keyUsage=critical,keyCertSign,cRLSign', 'subjectKeyIdentifier=hash', '[int]', 'basicConstraints=critical,CA:true,pathlen:0', 'keyUsage=critical,keyCertSign,cRLSign', 'subjectKeyIdentifier=hash', 'authorityKeyIdentifier=keyid', ''].join('\n'),
    );
    const run = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'op-root.key', '-out', 'op-root.pem', '-days', '30', '-subj', '/O=Operator/CN=Operator Root', '-config', conf, '-extensions', 'root', '-sha256');
    run('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(plug, 'ca.key'));
    run('req', '-new', '-key', join(plug, 'ca.key'), '-out', 'op-int.csr', '-subj', '/O=Operator/CN=Operator Zone');
    run('x509', '-req', '-in', 'op-int.csr', '-CA', 'op-root.pem', '-CAkey', 'op-root.key', '-CAcreateserial', '-out', join(plug, 'ca.crt'), '-days', '10', '-extfile', conf, '-extensions', 'int', '-sha256');
    writeFileSync(join(plug, 'bundle.pem'), readFileSync(join(dir, 'op-root.pem')));
    chmodSync(join(plug, 'ca.key'), 0o600);

    await expect(CertificateAuthority.load(plug)).rejects.toMatchObject({ code: 'TRELLIS_CA_TRUST_DOMAIN_UNKNOWN' });
    const ca = await CertificateAuthority.load(plug, { defaultTrustDomain: 'example.org' });
    const issued = await ca.signCsr(await createCsr(await generateWorkloadKey(), ID), ID);
    expect(opensslVerify(issued.certChainPem, 'sslclient', join(dir, 'op-root.pem'))).toMatchObject({ ok: true });
    expect(verifyChain(issued.certChainPem, ca.bundle).identity.spiffeId).toBe(ID.toString());
    // Never outliving its issuer: openssl made the intermediate for 10 days, we asked for 30.
    const long = await CertificateAuthority.load(plug, { defaultTrustDomain: 'example.org', maxTtlMs: 60 * 24 * HOUR });
    expect((await long.issueWorkload(ID, { ttlMs: 30 * 24 * HOUR })).notAfter.getTime()).toBe(ca.notAfter.getTime());
  });
});
