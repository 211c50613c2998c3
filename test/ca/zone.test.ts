/**
 * The zone a certificate proves: written into zone intermediates, embedded with their chain in the leaves
 * they sign, and accepted only when the embedded intermediate really signed the leaf and chains to the
 * bundle. Everything else is "zone unknown".
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { connect, createServer } from 'node:tls';
import { createRootCa, type CertificateAuthority } from '../../ca/authority.js';
import { parseCertificateDer, parseCertificatesPem } from '../../ca/certificate.js';
import { importPrivateKeyPem, signatureAlgorithmFor, spkiDer } from '../../ca/keys.js';
import { keyIdentifier, leafProfile, leafTemplate, signCertificate } from '../../ca/profile.js';
import { workloadId } from '../../ca/spiffe-id.js';
import { verifyChain } from '../../ca/verify.js';
import { ZoneVerifier, zoneOfLeaf } from '../../ca/zone.js';

const ID = workloadId('mesh.local', 'shop', 'orders');

async function leafOf(ca: CertificateAuthority): Promise<{ leaf: ReturnType<typeof parseCertificateDer>; pem: string; keyPem: string }> {
  const issued = await ca.issueWorkload(ID);
  return { leaf: parseCertificatesPem(issued.certChainPem, 'leaf')[0]!, pem: issued.certChainPem, keyPem: issued.keyPem };
}

/** A leaf signed by `signer` that carries `embedded` as its issuer chain: what a zone could try. */
function leafCarrying(signer: CertificateAuthority, embedded: readonly Buffer[]): ReturnType<typeof parseCertificateDer> {
  const key = importPrivateKeyPem(signer.exportKeyPem());
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const profile = leafProfile(signer.certificate.subjectName, keyIdentifier(signer.certificate.spki), embedded);
  const now = Date.now();
  return parseCertificateDer(signCertificate(leafTemplate(profile, ID.toString(), spkiDer(publicKey), new Date(now - 60_000), new Date(now + 3_600_000)), key, signatureAlgorithmFor(key)));
}

describe('zones in certificates', () => {
  it('writes the zone into a zone intermediate and proves it from a leaf alone', async () => {
    const root = await createRootCa({ trustDomain: 'mesh.local' });
    const east = await root.createIntermediate({ name: 'Trellis zone east', zone: 'east' });
    expect(east.zone).toBe('east');
    expect(root.zone).toBeUndefined();
    const { leaf, pem, keyPem } = await leafOf(east);
    expect(leaf.issuerChain?.map((d) => d.equals(east.certificate.der))).toEqual([true]);
    expect(zoneOfLeaf(leaf, root.bundle)).toBe('east');
    // Still an ordinary SVID to every other verifier: our chain check and a real TLS handshake.
    expect(verifyChain(pem, root.bundle).identity.spiffeId).toBe(ID.toString());
    const server = createServer({ cert: pem, key: keyPem, minVersion: 'TLSv1.3' }, (s) => s.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const authorized = await new Promise<boolean>((resolve) => {
      const c = connect({ port, host: '127.0.0.1', ca: root.bundle.toPem(), checkServerIdentity: () => undefined }, () => resolve(c.authorized));
      c.on('error', () => resolve(false));
    });
    server.close();
    expect(authorized).toBe(true);
    // OpenSSL reads the extension as an ordinary non-critical one, and round-trips our OID.
    const text = execFileSync('openssl', ['x509', '-noout', '-text'], { input: new X509Certificate(east.certificate.der).toString() }).toString();
    expect(text).toContain('2.25.151879473950138650261245432569886340257.1');
    expect(text).not.toMatch(/2\.25\.151879473950138650261245432569886340257\.1: critical/);
  });

  it('says "unknown" for every leaf that cannot prove its zone', async () => {
    const root = await createRootCa({ trustDomain: 'mesh.local' });
    const east = await root.createIntermediate({ name: 'east', zone: 'east' });
    const west = await root.createIntermediate({ name: 'west', zone: 'west' });
    const legacy = await root.createIntermediate({ name: 'made before zones' });
    // An intermediate without a zone (made before zones were written): its leaves carry nothing.
    const old = await leafOf(legacy);
    expect(old.leaf.issuerChain).toBeUndefined();
    expect(zoneOfLeaf(old.leaf, root.bundle)).toBeUndefined();
    // West's intermediate signs a leaf claiming east's chain: the signature does not verify with east's key.
    expect(zoneOfLeaf(leafCarrying(west.withBundle(root.bundle), [east.certificate.der]), root.bundle)).toBeUndefined();
    // A legacy intermediate embedding east's chain: same.
    expect(zoneOfLeaf(leafCarrying(legacy, [east.certificate.der]), root.bundle)).toBeUndefined();
    // Another mesh's zone intermediate naming "east": does not chain to this bundle.
    const otherRoot = await createRootCa({ trustDomain: 'mesh.local' });
    const otherEast = await otherRoot.createIntermediate({ name: 'east', zone: 'east' });
    expect(zoneOfLeaf((await leafOf(otherEast)).leaf, root.bundle)).toBeUndefined();
    // The root signing leaves itself, with a chain stapled on: the signer is a root, which names no zone.
    expect(zoneOfLeaf(leafCarrying(root, [east.certificate.der]), root.bundle)).toBeUndefined();
    // Garbage in the extension.
    expect(zoneOfLeaf(leafCarrying(east, [Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00])]), root.bundle)).toBeUndefined();
  });

  it('keeps verified chains per bundle, and a forged leaf cannot spoil a zone for its genuine callers', async () => {
    const root = await createRootCa({ trustDomain: 'mesh.local' });
    const east = await root.createIntermediate({ name: 'east', zone: 'east' });
    const west = await root.createIntermediate({ name: 'west', zone: 'west' });
    const verifier = new ZoneVerifier(root.bundle);
    // West's leaf carrying east's chain, first: refused, and not remembered as a verdict on east's chain.
    expect(verifier.zoneOf(leafCarrying(west, [east.certificate.der]))).toBeUndefined();
    expect(verifier.zoneOf((await leafOf(east)).leaf)).toBe('east');
    // Once east's chain is known, a forged leaf with it is still checked against east's key.
    expect(verifier.zoneOf(leafCarrying(west, [east.certificate.der]))).toBeUndefined();
    expect(verifier.zoneOf((await leafOf(east)).leaf)).toBe('east');
    // Past the intermediate's validity the remembered chain proves nothing.
    expect(verifier.zoneOf((await leafOf(east)).leaf, new Date(east.notAfter.getTime() + 1_000))).toBeUndefined();
  });

  it('refuses to make an intermediate whose zone is not a DNS label', async () => {
    const root = await createRootCa({ trustDomain: 'mesh.local' });
    for (const zone of ['East', 'a/b', 'east*', '', '-east', 'a'.repeat(64)]) {
      await expect(root.createIntermediate({ name: 'x', zone })).rejects.toMatchObject({ code: 'TRELLIS_CA_NAME_INVALID' });
    }
  });
});
