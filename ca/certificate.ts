/**
 * Parsed X.509 certificates: the fields Trellis decides on (validity, basic constraints, key usage,
 * extended key usage, SANs, key identifiers), read straight from the DER with ca/der.ts. The proxy calls
 * this on every handshake, so it copies nothing and decodes only what it needs.
 */
import { X509Certificate as NodeX509Certificate, createHash } from 'node:crypto';
import { InputError } from '../common/errors.js';
import { children, decodeBoolean, decodeOid, decodeSmallInteger, decodeTime, expectTag, readWhole, TAG, type DerNode } from './der.js';
import { CODE } from '../common/error-codes.js';

export const OID = Object.freeze({
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  nameConstraints: '2.5.29.30',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  extensionRequest: '1.2.840.113549.1.9.14',
  /**
   * Trellis's own extensions, under the UUID arc 2.25 (ITU-T X.667: an OID from a random UUID needs no
   * registration): the zone a zone intermediate serves (UTF8String, a DNS label), and, in leaves a zone
   * intermediate signs, that issuer's chain (SEQUENCE OF Certificate, root excluded), so a peer that sees only
   * the leaf can still verify who signed it (ca/zone.ts). Both non-critical: other verifiers ignore them.
   */
  trellisZone: '2.25.151879473950138650261245432569886340257.1',
  trellisIssuerChain: '2.25.151879473950138650261245432569886340257.2',
});

/** RFC 5280 4.2.1.3 bit positions. */
export const KEY_USAGE_BITS = Object.freeze([
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
] as const);
export type KeyUsage = (typeof KEY_USAGE_BITS)[number];

export interface SubjectAltNames {
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
  /** Count of names of any other kind (IP addresses, e-mail, directory names ...). */
  readonly others: number;
  readonly critical: boolean;
}

export interface ParsedCertificate {
  readonly der: Buffer;
  readonly tbs: Buffer;
  readonly serialHex: string;
  readonly signatureAlgorithm: string;
  readonly signature: Buffer;
  readonly issuerName: Buffer;
  readonly subjectName: Buffer;
  /** True when the subject Name holds no attributes (the SPIFFE leaf profile). */
  readonly subjectEmpty: boolean;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly spki: Buffer;
  readonly basicConstraints: { readonly ca: boolean; readonly pathLen: number | undefined; readonly critical: boolean } | undefined;
  readonly keyUsage: { readonly usages: ReadonlySet<KeyUsage>; readonly critical: boolean } | undefined;
  readonly extKeyUsage: readonly string[] | undefined;
  readonly subjectAltNames: SubjectAltNames | undefined;
  readonly subjectKeyId: string | undefined;
  readonly authorityKeyId: string | undefined;
  /** OIDs of critical extensions this parser does not understand: such a certificate must be refused. */
  readonly unknownCritical: readonly string[];
  /** The zone a zone intermediate names (`OID.trellisZone`); only a CA's counts (ca/zone.ts). */
  readonly zone: string | undefined;
  /** The issuer chain a leaf carries (`OID.trellisIssuerChain`), DER each; proves nothing until verified. */
  readonly issuerChain: readonly Buffer[] | undefined;
}

/** A zone name: one DNS label. */
export const ZONE_NAME = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;

const KNOWN = new Set<string>([OID.basicConstraints, OID.keyUsage, OID.extKeyUsage, OID.subjectAltName, OID.subjectKeyIdentifier, OID.authorityKeyIdentifier, OID.nameConstraints]);

export function parseCertificateDer(der: Buffer): ParsedCertificate {
  try {
    return parseUnchecked(der);
  } catch (err) {
    if (err instanceof InputError) throw new InputError(CODE.CERT_INVALID, `not a valid X.509 certificate (${err.message})`, { cause: err });
    throw new InputError(CODE.CERT_INVALID, 'not a valid X.509 certificate', { cause: err });
  }
}

function parseUnchecked(der: Buffer): ParsedCertificate {
  const [tbsNode, algNode, sigNode] = children(expectTag(readWhole(der, 'certificate'), TAG.SEQUENCE, 'certificate'));
  const tbsFields = children(expectTag(tbsNode, TAG.SEQUENCE, 'tbsCertificate'));
  let i = 0;
  if (tbsFields[0]?.tag === 0xa0) i++; // [0] version
  const serial = expectTag(tbsFields[i++], TAG.INTEGER, 'serial number');
  expectTag(tbsFields[i++], TAG.SEQUENCE, 'signature algorithm');
  const issuer = expectTag(tbsFields[i++], TAG.SEQUENCE, 'issuer');
  const [nb, na] = children(expectTag(tbsFields[i++], TAG.SEQUENCE, 'validity'));
  const subject = expectTag(tbsFields[i++], TAG.SEQUENCE, 'subject');
  const spki = expectTag(tbsFields[i++], TAG.SEQUENCE, 'subject public key info');
  let extensionsNode: DerNode | undefined;
  for (; i < tbsFields.length; i++) if (tbsFields[i]?.tag === 0xa3) extensionsNode = tbsFields[i];
  const algOid = decodeOid(expectTag(children(expectTag(algNode, TAG.SEQUENCE, 'signature algorithm'))[0], TAG.OID, 'algorithm'));
  const sig = expectTag(sigNode, TAG.BIT_STRING, 'signature');
  if (nb === undefined || na === undefined) throw new InputError(CODE.DER_MALFORMED, 'validity needs two times');

  const result: {
    -readonly [K in keyof ParsedCertificate]: ParsedCertificate[K];
  } = {
    der,
    tbs: (tbsNode as DerNode).bytes,
    serialHex: serial.content.toString('hex').replace(/^(00)+(?=.)/, ''),
    signatureAlgorithm: algOid,
    signature: sig.content.subarray(1),
    issuerName: issuer.bytes,
    subjectName: subject.bytes,
    subjectEmpty: subject.content.length === 0,
    notBefore: decodeTime(nb),
    notAfter: decodeTime(na),
    spki: spki.bytes,
    basicConstraints: undefined,
    keyUsage: undefined,
    extKeyUsage: undefined,
    subjectAltNames: undefined,
    subjectKeyId: undefined,
    authorityKeyId: undefined,
    unknownCritical: [],
    zone: undefined,
    issuerChain: undefined,
  };
  if (extensionsNode === undefined) return result;
  const unknownCritical: string[] = [];
  for (const ext of children(expectTag(children(extensionsNode)[0], TAG.SEQUENCE, 'extensions'))) {
    const parts = children(ext);
    const id = decodeOid(expectTag(parts[0], TAG.OID, 'extension id'));
    const critical = parts.length === 3 && decodeBoolean(expectTag(parts[1], TAG.BOOLEAN, 'critical flag'));
    const value = readWhole(expectTag(parts[parts.length - 1], TAG.OCTET_STRING, 'extension value').content, 'extension value');
    switch (id) {
      case OID.basicConstraints: {
        const fields = children(value);
        let ca = false;
        let pathLen: number | undefined;
        for (const f of fields) {
          if (f.tag === TAG.BOOLEAN) ca = decodeBoolean(f);
          else if (f.tag === TAG.INTEGER) pathLen = decodeSmallInteger(f);
        }
        result.basicConstraints = { ca, pathLen, critical };
        break;
      }
      case OID.keyUsage:
        result.keyUsage = { usages: decodeKeyUsage(expectTag(value, TAG.BIT_STRING, 'key usage')), critical };
        break;
      case OID.extKeyUsage:
        result.extKeyUsage = children(value).map((n) => decodeOid(expectTag(n, TAG.OID, 'extended key usage')));
        break;
      case OID.subjectAltName:
        result.subjectAltNames = decodeSubjectAltNames(value, critical);
        break;
      case OID.subjectKeyIdentifier:
        result.subjectKeyId = expectTag(value, TAG.OCTET_STRING, 'subject key identifier').content.toString('hex');
        break;
      case OID.authorityKeyIdentifier: {
        const keyId = children(value).find((n) => n.tag === 0x80);
        result.authorityKeyId = keyId?.content.toString('hex');
        break;
      }
      case OID.trellisZone: {
        const zone = expectTag(value, TAG.UTF8_STRING, 'zone').content.toString('utf8');
        if (!ZONE_NAME.test(zone)) throw new InputError(CODE.DER_MALFORMED, `the zone extension holds ${JSON.stringify(zone.slice(0, 80))}, not a DNS label`);
        result.zone = zone;
        break;
      }
      case OID.trellisIssuerChain:
        result.issuerChain = children(expectTag(value, TAG.SEQUENCE, 'issuer chain')).map((c) => expectTag(c, TAG.SEQUENCE, 'issuer certificate').bytes);
        break;
      default:
        if (critical && !KNOWN.has(id)) unknownCritical.push(id);
    }
  }
  result.unknownCritical = unknownCritical;
  return result;
}

function decodeKeyUsage(node: DerNode): ReadonlySet<KeyUsage> {
  const usages = new Set<KeyUsage>();
  const bits = node.content.subarray(1);
  KEY_USAGE_BITS.forEach((name, index) => {
    const byte = bits[index >> 3];
    if (byte !== undefined && (byte & (0x80 >> (index & 7))) !== 0) usages.add(name);
  });
  return usages;
}

export function decodeSubjectAltNames(value: DerNode, critical: boolean): SubjectAltNames {
  const uris: string[] = [];
  const dnsNames: string[] = [];
  let others = 0;
  for (const name of children(expectTag(value, TAG.SEQUENCE, 'subject alternative names'))) {
    if (name.tag === 0x86) uris.push(name.content.toString('latin1'));
    else if (name.tag === 0x82) dnsNames.push(name.content.toString('latin1'));
    else others++;
  }
  return { uris, dnsNames, others, critical };
}

/** Splits PEM text into DER blocks of one label; anything that is not a clean PEM block is an error. */
export function pemBlocks(text: string, label: string, what: string): Buffer[] {
  const blocks: Buffer[] = [];
  const re = new RegExp(`-----BEGIN ${label}-----\\r?\\n([A-Za-z0-9+/=\\r\\n]+?)-----END ${label}-----`, 'g');
  let rest = text;
  for (const match of text.matchAll(re)) {
    const body = (match[1] as string).replace(/\s+/g, '');
    const der = Buffer.from(body, 'base64');
    // Buffer.from skips characters it cannot decode; re-encoding catches bodies that were not clean base64.
    if (der.length === 0 || der.toString('base64') !== body) {
      throw new InputError(CODE.PEM_INVALID, `${what}: a ${label} block is not valid base64`);
    }
    blocks.push(der);
    rest = rest.replace(match[0], '');
  }
  if (blocks.length === 0) throw new InputError(CODE.PEM_INVALID, `${what}: no "-----BEGIN ${label}-----" block found`);
  if (/-----BEGIN /.test(rest)) throw new InputError(CODE.PEM_INVALID, `${what}: holds a PEM block that is not a well-formed ${label}`);
  return blocks;
}

export function parseCertificatesPem(text: string, what: string): ParsedCertificate[] {
  return pemBlocks(text, 'CERTIFICATE', what).map((der) => parseCertificateDer(der));
}

export function certificatePem(der: Uint8Array): string {
  const body = Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`;
}

export function fingerprintSha256(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex').toUpperCase().replace(/(..)(?!$)/g, '$1:');
}

/** The node:crypto view of the same certificate: signature checks and human-readable names. */
export function toNodeCertificate(cert: ParsedCertificate): NodeX509Certificate {
  return new NodeX509Certificate(cert.der);
}

/** The single SPIFFE URI SAN of a certificate, or undefined when there is none or more than one. */
export function uriSans(cert: ParsedCertificate): readonly string[] {
  return cert.subjectAltNames?.uris ?? [];
}
