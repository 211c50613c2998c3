/**
 * The webhook's own serving certificate, signed by the mesh CA (the zone intermediate).
 *
 * Workload certificates carry one SPIFFE URI and nothing else, but the API server dials the webhook by
 * its Service's DNS name (`trellis-injector.trellis-system.svc`) and checks that name, so this profile
 * differs: DNS SANs, EKU serverAuth only, CA:false, critical keyUsage digitalSignature, a fresh P-256 key
 * per issuance. It is built from the CA library's DER primitives and signed with the CA's key, so the
 * `caBundle` the API server trusts is simply the mesh's trust bundle.
 */
import { isIP } from 'node:net';
import { CertificateAuthority, trustDomainOf } from '../ca/authority.js';
import { OID, certificatePem, parseCertificatesPem } from '../ca/certificate.js';
import { bitString, boolean, octetString, oid, sequence, tlv } from '../ca/der.js';
import { generateKey, importPrivateKeyPem, privateKeyPem, signatureAlgorithmFor, spkiDer } from '../ca/keys.js';
import { authorityKeyIdExtension, encodeName, keyIdentifier, randomSerial, signCertificate, subjectKeyIdExtension, BACKDATE_MS } from '../ca/profile.js';
import { InputError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';

export interface ServingMaterial {
  /** Leaf then the intermediates, as node:tls `cert` takes it. */
  readonly certChainPem: string;
  readonly keyPem: string;
  /** The roots the API server must trust: the webhook configuration's `caBundle` (before base64). */
  readonly caBundlePem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** The issuing CA as PEM text, e.g. the files of a mounted Secret (ca.crt, ca.key, bundle.pem). */
export interface IssuerPem {
  readonly certChainPem: string;
  readonly keyPem: string;
  readonly bundlePem?: string;
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? sequence(oid(id), boolean(true), octetString(value)) : sequence(oid(id), octetString(value));
}

function sanExtension(names: readonly string[]): Buffer {
  const entries = names.map((name) => {
    const family = isIP(name);
    if (family === 4) return tlv(0x87, Buffer.from(name.split('.').map(Number)));
    if (family !== 0) throw new InputError(CODE.INJECTOR_SERVING_NAME, `IPv6 serving names are not supported: ${name}`);
    return tlv(0x82, Buffer.from(name, 'ascii'));
  });
  return extension(OID.subjectAltName, false, sequence(...entries));
}

const DNS_NAME = /^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/;

export function checkServingNames(names: readonly string[]): readonly string[] {
  if (names.length === 0) throw new InputError(CODE.INJECTOR_SERVING_NAME, 'at least one DNS name is needed for the serving certificate');
  for (const name of names) {
    if (isIP(name) === 4) continue;
    if (!DNS_NAME.test(name)) throw new InputError(CODE.INJECTOR_SERVING_NAME, `"${name}" is not a DNS name or IPv4 address`);
  }
  return Object.freeze([...names]);
}

/** The DNS names the API server may use for the webhook Service. */
export function serviceDnsNames(service: string, namespace: string): string[] {
  return [`${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`, `${service}.${namespace}`, service];
}

/**
 * Validates the issuer like any plug-in CA (a CA certificate, its key, chaining to the bundle, valid now)
 * and signs a fresh serving certificate for `names`, valid `ttlMs` from now (clamped to the issuer's end).
 */
export async function issueServingCertificate(issuer: IssuerPem, names: readonly string[], ttlMs: number, now: Date = new Date()): Promise<ServingMaterial> {
  const [first] = parseCertificatesPem(issuer.certChainPem, 'issuing CA certificate');
  const trustDomain = first === undefined ? undefined : trustDomainOf(first);
  const ca = CertificateAuthority.fromPem(
    { certChainPem: issuer.certChainPem, keyPem: issuer.keyPem, trustDomain: trustDomain ?? 'cluster.local', ...(issuer.bundlePem === undefined ? {} : { bundlePem: issuer.bundlePem }) },
    { now: () => now },
  );
  const signingKey = importPrivateKeyPem(ca.exportKeyPem(), 'CA key');
  const { privateKey } = await generateKey('P-256');
  const spki = spkiDer(privateKey);
  const notBefore = new Date(Math.floor((now.getTime() - BACKDATE_MS) / 1000) * 1000);
  const notAfter = new Date(Math.floor(Math.min(now.getTime() + ttlMs, ca.notAfter.getTime()) / 1000) * 1000);
  if (notAfter.getTime() <= now.getTime()) throw new InputError(CODE.INJECTOR_ISSUER_EXPIRED, 'the issuing CA expires before a serving certificate could be valid');
  const der = signCertificate(
    {
      serial: randomSerial(),
      issuerName: ca.certificate.subjectName,
      subjectName: encodeName({ commonName: names[0] ?? 'trellis-injector' }),
      notBefore,
      notAfter,
      spki,
      extensions: [
        extension(OID.basicConstraints, true, sequence()),
        extension(OID.keyUsage, true, bitString(Buffer.from([0x80]), 7)),
        extension(OID.extKeyUsage, false, sequence(oid(OID.serverAuth))),
        sanExtension(names),
        subjectKeyIdExtension(spki),
        authorityKeyIdExtension(keyIdentifier(ca.certificate.spki)),
      ],
    },
    signingKey,
    signatureAlgorithmFor(signingKey),
  );
  const chain = ca.isRoot ? '' : ca.certChainPem;
  return Object.freeze({ certChainPem: certificatePem(der) + chain, keyPem: privateKeyPem(privateKey), caBundlePem: ca.bundle.toPem(), notBefore, notAfter });
}
