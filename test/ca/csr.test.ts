import 'reflect-metadata';
import { describe, expect, it, beforeAll } from 'vitest';
import { generateKeyPairSync, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { createCsr, generateWorkloadKey, parseCsr } from '../../ca/csr.js';
import { OID, parseCertificatesPem } from '../../ca/certificate.js';
import { bitString, octetString, oid, sequence, set, smallInteger, tlv } from '../../ca/der.js';
import { signatureAlgorithmFor, spkiDer } from '../../ca/keys.js';
import { sign } from 'node:crypto';
import { parseSpiffeId } from '../../ca/spiffe-id.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import type { TrellisError } from '../../common/errors.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
type KeyPair = Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0]['keys'];
const ID = parseSpiffeId('spiffe://cluster.local/ns/shop/sa/cart');

async function refusalOf(promise: Promise<unknown>): Promise<TrellisError> {
  try {
    await promise;
  } catch (err) {
    return err as TrellisError;
  }
  throw new Error('expected a refusal');
}

/** A CSR made by @peculiar/x509, an implementation independent of ours, with any SANs. */
async function peculiarCsr(names: x509.JsonGeneralName[]): Promise<string> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys: keys as unknown as KeyPair,
    signingAlgorithm: alg,
    name: 'CN=whatever',
    extensions: [new x509.SubjectAlternativeNameExtension(names)],
  });
  return csr.toString('pem');
}

/** A CSR signed by its key, with whatever attributes are given (each a DER Attribute), built by hand. */
async function handmadeCsr(attributes: (sanUri: (uri: string) => Buffer) => Buffer[]): Promise<string> {
  const key = await generateWorkloadKey();
  const sanUri = (uri: string): Buffer => sequence(oid(OID.subjectAltName), octetString(sequence(tlv(0x86, Buffer.from(uri, 'ascii')))));
  const info = sequence(smallInteger(0), sequence(), spkiDer(key.privateKey), tlv(0xa0, Buffer.concat(attributes(sanUri))));
  const algorithm = signatureAlgorithmFor(key.privateKey);
  const der = sequence(info, algorithm.identifier, bitString(sign(algorithm.digest, info, key.privateKey)));
  return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END CERTIFICATE REQUEST-----\n`;
}

describe('CSR signing', () => {
  let pki: TestPki;
  beforeAll(async () => {
    pki = await createTestPki();
  });

  it('signs a workload CSR for the authenticated identity, chain up to but not including the root', async () => {
    const key = await generateWorkloadKey();
    expect(key.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    const signed = await pki.intermediate.signCsr(await createCsr(key, ID), ID, { ttlMs: 3_600_000 });
    const [leaf, intermediate, ...rest] = parseCertificatesPem(signed.certChainPem, 'chain');
    expect(rest).toHaveLength(0);
    expect(intermediate?.der.equals(pki.intermediate.certificate.der)).toBe(true);
    expect(leaf?.subjectAltNames?.uris).toEqual([ID.toString()]);
    expect(leaf?.spki.equals(key.publicKey.export({ type: 'spki', format: 'der' }))).toBe(true);
    expect(leaf?.serialHex).toBe(signed.serial.replace(/^0+/, ''));
    expect(Math.abs((leaf?.notAfter.getTime() ?? 0) - Date.now() - 3_600_000)).toBeLessThan(5_000);
    expect(signed.notAfter.getTime()).toBe(leaf?.notAfter.getTime());
  });

  it('accepts a CSR from another implementation, with no SAN or with exactly the identity', async () => {
    const withId = await pki.intermediate.signCsr(await peculiarCsr([{ type: 'url', value: ID.toString() }]), ID);
    expect(parseCertificatesPem(withId.certChainPem, 'chain')[0]?.subjectAltNames?.uris).toEqual([ID.toString()]);
    const none = await pki.intermediate.signCsr(await peculiarCsr([]), ID);
    const leaf = parseCertificatesPem(none.certChainPem, 'chain')[0];
    expect(leaf?.subjectAltNames?.uris).toEqual([ID.toString()]);
    // The subject the CSR asked for (CN=whatever) is never copied.
    expect(leaf?.subjectEmpty).toBe(true);
  });

  it('takes the identity from the caller, never from the CSR', async () => {
    const other = parseSpiffeId('spiffe://cluster.local/ns/shop/sa/admin');
    const err = await refusalOf(pki.intermediate.signCsr(await createCsr(await generateWorkloadKey(), other), ID));
    expect(err.code).toBe('TRELLIS_CA_CSR_SAN_MISMATCH');
    expect(err.message).toContain('spiffe://cluster.local/ns/shop/sa/admin');
  });

  it('refuses a CSR asking for other SANs (DNS, IP, a second URI)', async () => {
    for (const names of [
      [{ type: 'url', value: ID.toString() }, { type: 'dns', value: 'bank.example.com' }],
      [{ type: 'url', value: ID.toString() }, { type: 'ip', value: '10.0.0.1' }],
      [{ type: 'url', value: ID.toString() }, { type: 'url', value: 'spiffe://cluster.local/ns/kube-system/sa/admin' }],
    ] as x509.JsonGeneralName[][]) {
      const err = await refusalOf(pki.intermediate.signCsr(await peculiarCsr(names), ID));
      expect(err.code).toBe('TRELLIS_CA_CSR_SAN_MISMATCH');
    }
  });

  it('refuses a CSR with two SAN extensions, whichever comes last (it used to be judged on the last one)', async () => {
    const evil = 'spiffe://cluster.local/ns/trellis-system/sa/trellis-control';
    const extensionRequest = (...extensions: Buffer[]): Buffer => sequence(oid(OID.extensionRequest), set(sequence(...extensions)));
    const twoSans = await handmadeCsr((san) => [extensionRequest(san(evil), san(ID.toString()))]);
    expect(() => parseCsr(twoSans)).toThrow(/more than once/);
    expect((await refusalOf(pki.intermediate.signCsr(twoSans, ID))).code).toBe('TRELLIS_CA_CSR_DUPLICATE_EXTENSION');
    // Two extensionRequest attributes, or one holding two values, are the same trick one level up.
    const twoAttributes = await handmadeCsr((san) => [extensionRequest(san(evil)), extensionRequest(san(ID.toString()))]);
    expect((await refusalOf(pki.intermediate.signCsr(twoAttributes, ID))).code).toBe('TRELLIS_CA_CSR_DUPLICATE_EXTENSION');
    const twoValues = await handmadeCsr((san) => [sequence(oid(OID.extensionRequest), set(sequence(san(evil)), sequence(san(ID.toString()))))]);
    expect((await refusalOf(pki.intermediate.signCsr(twoValues, ID))).code).toBe('TRELLIS_CA_CSR_DUPLICATE_EXTENSION');
    // The same hand-made request with one SAN is fine: the refusal is about the duplicate, not the builder.
    const one = await handmadeCsr((san) => [extensionRequest(san(ID.toString()))]);
    expect(parseSpiffeId(parseCertificatesPem((await pki.intermediate.signCsr(one, ID)).certChainPem, 'chain')[0]?.subjectAltNames?.uris[0] ?? '').toString()).toBe(ID.toString());
  });

  it('refuses a CSR whose signature does not match its public key', async () => {
    const csr = await createCsr(await generateWorkloadKey(), ID);
    const der = Buffer.from(csr.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    // Swap in another key of the same size: the request now claims a key its signer does not hold.
    const stranger = (await generateWorkloadKey()).publicKey.export({ type: 'spki', format: 'der' });
    const mine = (parseCsr(csr).spki);
    const at = der.indexOf(mine);
    stranger.copy(der, at);
    const forged = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    const err = await refusalOf(pki.intermediate.signCsr(forged, ID));
    expect(err.code).toBe('TRELLIS_CA_CSR_SIGNATURE');
    expect(err.message).toMatch(/signature does not match/);
  });

  it('refuses an RSA-1024 key and accepts RSA-2048', async () => {
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    const err = await refusalOf(pki.intermediate.signCsr(await createCsr(weak, ID), ID));
    expect(err.code).toBe('TRELLIS_CA_KEY_WEAK');
    expect(err.message).toMatch(/1024 bits is too weak \(minimum 2048\)/);
    const strong = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    await expect(pki.intermediate.signCsr(await createCsr(strong, ID), ID)).resolves.toHaveProperty('serial');
  });

  it('refuses unknown curves and key types', async () => {
    for (const key of [generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey, generateKeyPairSync('ec', { namedCurve: 'secp521r1' }).privateKey]) {
      const csr = await createCsr(key, ID);
      expect((await refusalOf(pki.intermediate.signCsr(csr, ID))).code).toBe('TRELLIS_CA_KEY_UNSUPPORTED');
    }
    const ed = generateKeyPairSync('ed25519').privateKey;
    await expect(createCsr(ed, ID)).rejects.toThrow(/cannot sign with a ed25519 key/);
  });

  it('accepts a P-384 workload key', async () => {
    const key = await generateWorkloadKey('P-384');
    const signed = await pki.intermediate.signCsr(await createCsr(key, ID), ID);
    expect(signed.certChainPem).toContain('BEGIN CERTIFICATE');
  });

  it('refuses garbage, truncated and oversized PEM', async () => {
    const valid = await createCsr(await generateWorkloadKey(), ID);
    const body = valid.replace(/-----[^-]+-----|\s/g, '');
    for (const garbage of [
      '',
      'hello',
      '-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n',
      `-----BEGIN CERTIFICATE REQUEST-----\n${body.slice(0, 100)}\n-----END CERTIFICATE REQUEST-----\n`,
      `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from('not der at all').toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`,
      valid + valid,
      pki.bundlePem,
      'x'.repeat(20_000),
    ]) {
      const err = await refusalOf(pki.intermediate.signCsr(garbage, ID));
      expect(err.code, garbage.slice(0, 40)).toBe('TRELLIS_CA_CSR_INVALID');
      expect(err.side).toBe('input');
    }
  });

  it('refuses a CSR that asks for a CA certificate', async () => {
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
    const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as unknown as KeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: alg, extensions: [new x509.BasicConstraintsExtension(true, 0, true)] });
    const err = await refusalOf(pki.intermediate.signCsr(csr.toString('pem'), ID));
    expect(err.code).toBe('TRELLIS_CA_CSR_SAN_MISMATCH');
    expect(err.message).toMatch(/CA certificate/);
  });

  it('refuses identities outside its trust domain and IDs without a path', async () => {
    const csr = await createCsr(await generateWorkloadKey(), ID);
    const foreign = parseSpiffeId('spiffe://other.org/ns/shop/sa/cart');
    expect((await refusalOf(pki.intermediate.signCsr(csr, foreign))).code).toBe('TRELLIS_CA_FOREIGN_TRUST_DOMAIN');
    expect((await refusalOf(pki.intermediate.signCsr(csr, parseSpiffeId('spiffe://cluster.local')))).code).toBe('TRELLIS_SPIFFE_ID_INVALID');
  });
});
