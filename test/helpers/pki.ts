/**
 * An in-memory PKI for tests: a root and a zone intermediate made by the real ca/ library, and workload
 * identities issued by that intermediate, ready for node:tls (`cert: certChainPem, key: keyPem, ca: trustBundlePem`).
 *
 *   const pki = await createTestPki();                        // trust domain "cluster.local"
 *   const server = await pki.issue('payments', 'shop');       // spiffe://cluster.local/ns/shop/sa/payments
 *   const expired = await pki.issue('old', 'shop', { notBefore: hoursAgo(2), notAfter: hoursAgo(1) });
 *   const foreign = await createTestPki({ trustDomain: 'other.example' }); // not trusted by `pki`
 */
import type { WorkloadIdentity } from '../../api/data-plane.js';
import { createRootCa, type CertificateAuthority } from '../../ca/authority.js';
import type { TrustBundle } from '../../ca/bundle.js';
import { workloadId } from '../../ca/spiffe-id.js';
import { generateKeyPairSync } from 'node:crypto';
import { certificatePem } from '../../ca/certificate.js';
import { importPrivateKeyPem, signatureAlgorithmFor, spkiDer } from '../../ca/keys.js';
import { keyIdentifier, leafProfile, leafTemplate, signCertificate } from '../../ca/profile.js';

export interface TestIssueOptions {
  readonly ttlMs?: number;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

export interface TestWorkloadIdentity extends WorkloadIdentity {
  readonly spiffeId: string;
  readonly notAfter: Date;
  readonly serial: string;
}

export interface TestPki {
  readonly trustDomain: string;
  readonly root: CertificateAuthority;
  readonly intermediate: CertificateAuthority;
  readonly bundle: TrustBundle;
  /** PEM of the root(s) to pass as node:tls `ca`. */
  readonly bundlePem: string;
  issue(service: string, namespace: string, options?: TestIssueOptions): Promise<TestWorkloadIdentity>;
}

/** How far the test CAs' validity starts in the past, so tests can issue leaves that already expired. */
const CA_BACKDATE_MS = 7 * 24 * 3_600_000;

export async function createTestPki(options: { trustDomain?: string } = {}): Promise<TestPki> {
  const trustDomain = options.trustDomain ?? 'cluster.local';
  const notBefore = new Date(Date.now() - CA_BACKDATE_MS);
  const root = await createRootCa({ trustDomain, notBefore, commonName: `test root ${trustDomain}` });
  const intermediate = await root.createIntermediate({ name: 'test-zone', notBefore });
  return Object.freeze({
    trustDomain,
    root,
    intermediate,
    bundle: root.bundle,
    bundlePem: root.bundle.toPem(),
    async issue(service: string, namespace: string, issueOptions: TestIssueOptions = {}): Promise<TestWorkloadIdentity> {
      const id = workloadId(trustDomain, namespace, service);
      const issued = await intermediate.issueWorkload(id, issueOptions);
      return Object.freeze({
        certChainPem: issued.certChainPem,
        keyPem: issued.keyPem,
        trustBundlePem: issued.trustBundlePem,
        spiffeId: id.toString(),
        notAfter: issued.notAfter,
        serial: issued.serial,
      });
    },
  });
}

/** A leaf naming `spiffeId`, signed by `issuer` whatever trust domain it serves: what a rogue CA could make. */
export function forgeLeaf(issuer: CertificateAuthority, spiffeId: string): WorkloadIdentity {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const issuerKey = importPrivateKeyPem(issuer.exportKeyPem());
  const profile = leafProfile(issuer.certificate.subjectName, keyIdentifier(issuer.certificate.spki));
  const now = Date.now();
  const der = signCertificate(leafTemplate(profile, spiffeId, spkiDer(publicKey), new Date(now - 60_000), new Date(now + 3_600_000)), issuerKey, signatureAlgorithmFor(issuerKey));
  return { certChainPem: certificatePem(der) + issuer.certChainPem, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), trustBundlePem: issuer.bundle.toPem() };
}
