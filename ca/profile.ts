/**
 * Certificate profiles and the DER builder that signs them.
 *
 * Leaf (X.509-SVID): empty subject with a critical SAN holding exactly one URI, CA:false, critical keyUsage
 * digitalSignature (never keyCertSign or cRLSign), EKU serverAuth + clientAuth, subject and authority key IDs.
 * CA: CA:true with a pathLen, critical keyUsage keyCertSign + cRLSign, a subject naming the CA.
 * Constant parts (algorithm identifier, issuer name, fixed extensions) are encoded once per issuer.
 */
import { createHash, randomBytes, sign, type KeyObject } from 'node:crypto';
import { bitString, boolean, children, explicit, octetString, oid, readWhole, sequence, set, smallInteger, tlv, time, unsignedInteger, utf8String } from './der.js';
import { OID } from './certificate.js';
import type { SignatureAlgorithm } from './keys.js';

/** How far NotBefore is back-dated, so peers whose clocks lag a little accept a brand-new certificate. */
export const BACKDATE_MS = 60_000;

export interface CertificateTemplate {
  readonly serial: Buffer;
  readonly issuerName: Buffer;
  readonly subjectName: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly spki: Buffer;
  readonly extensions: readonly Buffer[];
}

/** 16 random bytes with the top bit clear: a positive serial of full length (RFC 5280: at most 20 octets). */
export function randomSerial(): Buffer {
  const serial = randomBytes(16);
  serial[0] = ((serial[0] as number) & 0x7f) | 0x40;
  return serial;
}

export function signCertificate(template: CertificateTemplate, signingKey: KeyObject, algorithm: SignatureAlgorithm): Buffer {
  const tbs = sequence(
    explicit(0, smallInteger(2)),
    unsignedInteger(template.serial),
    algorithm.identifier,
    template.issuerName,
    sequence(time(template.notBefore), time(template.notAfter)),
    template.subjectName,
    template.spki,
    explicit(3, sequence(...template.extensions)),
  );
  const signature = sign(algorithm.digest, tbs, signingKey);
  return sequence(tbs, algorithm.identifier, bitString(signature));
}

export interface NameAttributes {
  readonly commonName?: string;
  readonly organization?: string;
}

/** A distinguished name of O then CN, in UTF8String; an empty SEQUENCE when no attribute is given. */
export function encodeName(attributes: NameAttributes): Buffer {
  const rdns: Buffer[] = [];
  if (attributes.organization !== undefined) rdns.push(set(sequence(oid('2.5.4.10'), utf8String(attributes.organization))));
  if (attributes.commonName !== undefined) rdns.push(set(sequence(oid('2.5.4.3'), utf8String(attributes.commonName))));
  return sequence(...rdns);
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? sequence(oid(id), boolean(true), octetString(value)) : sequence(oid(id), octetString(value));
}

/** RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(spki: Buffer): Buffer {
  const [, keyBits] = children(readWhole(spki, 'public key'));
  return createHash('sha1').update((keyBits?.content ?? Buffer.alloc(0)).subarray(1)).digest();
}

export function subjectKeyIdExtension(spki: Buffer): Buffer {
  return extension(OID.subjectKeyIdentifier, false, octetString(keyIdentifier(spki)));
}

export function authorityKeyIdExtension(issuerKeyId: Buffer): Buffer {
  return extension(OID.authorityKeyIdentifier, false, sequence(tlv(0x80, issuerKeyId)));
}

// keyUsage BIT STRING bytes: digitalSignature is bit 0 (0x80, 7 unused bits); keyCertSign|cRLSign are bits 5,6 (0x06, 1 unused).
const LEAF_KEY_USAGE = extension(OID.keyUsage, true, bitString(Buffer.from([0x80]), 7));
const CA_KEY_USAGE = extension(OID.keyUsage, true, bitString(Buffer.from([0x06]), 1));
const LEAF_BASIC_CONSTRAINTS = extension(OID.basicConstraints, true, sequence());
const LEAF_EXT_KEY_USAGE = extension(OID.extKeyUsage, false, sequence(oid(OID.serverAuth), oid(OID.clientAuth)));
const EMPTY_NAME = sequence();

export function uriSanExtension(uri: string): Buffer {
  // Critical because the subject is empty (RFC 5280 4.2.1.6).
  return extension(OID.subjectAltName, true, sequence(tlv(0x86, Buffer.from(uri, 'ascii'))));
}

export function caBasicConstraints(pathLen: number): Buffer {
  return extension(OID.basicConstraints, true, sequence(boolean(true), smallInteger(pathLen)));
}

/** The fixed parts of every leaf one issuer signs, encoded once. */
export interface LeafProfile {
  readonly issuerName: Buffer;
  readonly fixedExtensions: readonly Buffer[];
}

/**
 * `issuerChain`: the issuer and its chain without the root (DER each), embedded in every leaf when the issuer
 * is a zone intermediate, so a peer that sees only the leaf can verify who signed it (ca/zone.ts).
 */
export function leafProfile(issuerName: Buffer, issuerKeyId: Buffer, issuerChain?: readonly Buffer[]): LeafProfile {
  const fixed = [LEAF_BASIC_CONSTRAINTS, LEAF_KEY_USAGE, LEAF_EXT_KEY_USAGE, authorityKeyIdExtension(issuerKeyId)];
  if (issuerChain !== undefined && issuerChain.length > 0) fixed.push(extension(OID.trellisIssuerChain, false, sequence(...issuerChain)));
  return Object.freeze({ issuerName, fixedExtensions: Object.freeze(fixed) });
}

export function leafTemplate(profile: LeafProfile, uri: string, spki: Buffer, notBefore: Date, notAfter: Date): CertificateTemplate {
  return {
    serial: randomSerial(),
    issuerName: profile.issuerName,
    subjectName: EMPTY_NAME,
    notBefore,
    notAfter,
    spki,
    extensions: [...profile.fixedExtensions, uriSanExtension(uri), subjectKeyIdExtension(spki)],
  };
}

export interface CaTemplateOptions {
  readonly subjectName: Buffer;
  readonly issuerName: Buffer;
  /** The issuer's key ID; undefined for a self-signed root (its AKI is its own SKI). */
  readonly issuerKeyId: Buffer | undefined;
  readonly spki: Buffer;
  readonly pathLen: number;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** A URI SAN naming the trust domain (spiffe://td), as SPIRE puts on its CAs. */
  readonly trustDomainUri: string;
  /** A zone intermediate's zone (`OID.trellisZone`). */
  readonly zone?: string;
}

export function caTemplate(options: CaTemplateOptions): CertificateTemplate {
  const ownKeyId = keyIdentifier(options.spki);
  return {
    serial: randomSerial(),
    issuerName: options.issuerName,
    subjectName: options.subjectName,
    notBefore: options.notBefore,
    notAfter: options.notAfter,
    spki: options.spki,
    extensions: [
      caBasicConstraints(options.pathLen),
      CA_KEY_USAGE,
      extension(OID.subjectKeyIdentifier, false, octetString(ownKeyId)),
      authorityKeyIdExtension(options.issuerKeyId ?? ownKeyId),
      extension(OID.subjectAltName, false, sequence(tlv(0x86, Buffer.from(options.trustDomainUri, 'ascii')))),
      ...(options.zone === undefined ? [] : [extension(OID.trellisZone, false, utf8String(options.zone))]),
    ],
  };
}

