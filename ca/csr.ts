/**
 * Certificate signing requests (PKCS#10).
 *
 * Workload side: `generateWorkloadKey` makes the ECDSA P-256 key that never leaves the workload, and
 * `createCsr` asks for exactly its SPIFFE ID. CA side: `parseCsr` reads a request, refuses weak or unknown
 * keys, checks the request's own signature (proof the requester holds the key) and reports what names it
 * asks for. The CA never takes the identity from the CSR: the caller names it from an authenticated credential.
 */
import { sign, verify, type KeyObject } from 'node:crypto';
import { InputError } from '../common/errors.js';
import { bitString, children, decodeBoolean, decodeOid, expectTag, octetString, oid, readWhole, sequence, set, smallInteger, tlv, TAG } from './der.js';
import { decodeSubjectAltNames, OID, pemBlocks, type SubjectAltNames } from './certificate.js';
import { checkPublicKey, generateKey, importPrivateKeyPem, privateKeyPem, signatureAlgorithmFor, SIGNATURE_DIGESTS, spkiDer, type Curve } from './keys.js';
import type { SpiffeId } from './spiffe-id.js';
import { CODE } from '../common/error-codes.js';

/** Larger requests are refused before parsing: a P-256 CSR is about 400 bytes, an RSA-8192 one about 2.2 KB. */
export const MAX_CSR_PEM_BYTES = 16 * 1024;

export interface WorkloadKey {
  /** PKCS#8 PEM, for node:tls `key`. */
  readonly keyPem: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

export async function generateWorkloadKey(curve: Curve = 'P-256'): Promise<WorkloadKey> {
  const { privateKey, publicKey } = await generateKey(curve);
  return Object.freeze({ keyPem: privateKeyPem(privateKey), privateKey, publicKey });
}

/** A CSR with an empty subject and one URI SAN: the SPIFFE ID the workload believes it has. */
export async function createCsr(key: WorkloadKey | KeyObject | string, spiffeId: SpiffeId | string): Promise<string> {
  const privateKey = typeof key === 'string' ? importPrivateKeyPem(key, 'workload key') : 'keyPem' in key ? key.privateKey : key;
  const publicSpki = spkiDer(privateKey);
  const san = sequence(oid(OID.subjectAltName), octetString(sequence(tlv(0x86, Buffer.from(String(spiffeId), 'ascii')))));
  const attributes = tlv(0xa0, sequence(oid(OID.extensionRequest), set(sequence(san))));
  const info = sequence(smallInteger(0), sequence(), publicSpki, attributes);
  const algorithm = signatureAlgorithmFor(privateKey);
  const signature = sign(algorithm.digest, info, privateKey);
  const der = sequence(info, algorithm.identifier, bitString(signature));
  return pem(der, 'CERTIFICATE REQUEST');
}

function pem(der: Buffer, label: string): string {
  const body = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`;
}

export interface ParsedCsr {
  readonly spki: Buffer;
  readonly publicKey: KeyObject;
  /** The SANs the request asks for, if it carries an extensionRequest with one. */
  readonly subjectAltNames: SubjectAltNames | undefined;
  /** True when the request asks for basicConstraints CA:true. */
  readonly requestsCa: boolean;
}

function csrError(code: string, message: string, cause?: unknown): InputError {
  return new InputError(code, `certificate signing request refused: ${message}`, cause === undefined ? {} : { cause });
}

/** Parses and checks a PEM CSR: size, structure, key policy, then the signature over the request. */
export function parseCsr(csrPem: string): ParsedCsr {
  if (typeof csrPem !== 'string' || csrPem.length > MAX_CSR_PEM_BYTES) throw csrError(CODE.CA_CSR_INVALID, `larger than ${MAX_CSR_PEM_BYTES} bytes`);
  let blocks: Buffer[];
  try {
    blocks = pemBlocks(csrPem, 'CERTIFICATE REQUEST', 'CSR');
  } catch (err) {
    throw csrError(CODE.CA_CSR_INVALID, (err as Error).message, err);
  }
  if (blocks.length !== 1) throw csrError(CODE.CA_CSR_INVALID, `expected one PEM block, found ${blocks.length}`);
  let info: Buffer;
  let spki: Buffer;
  let algorithmOid: string;
  let signature: Buffer;
  let attributes: ReturnType<typeof children> = [];
  try {
    const [infoNode, algNode, sigNode] = children(expectTag(readWhole(blocks[0] as Buffer, 'CSR'), TAG.SEQUENCE, 'CSR'));
    const infoFields = children(expectTag(infoNode, TAG.SEQUENCE, 'CSR info'));
    expectTag(infoFields[0], TAG.INTEGER, 'CSR version');
    expectTag(infoFields[1], TAG.SEQUENCE, 'CSR subject');
    spki = expectTag(infoFields[2], TAG.SEQUENCE, 'CSR public key').bytes;
    if (infoFields[3] !== undefined) attributes = children(expectTag(infoFields[3], 0xa0, 'CSR attributes'));
    info = (infoNode as { bytes: Buffer }).bytes;
    algorithmOid = decodeOid(expectTag(children(expectTag(algNode, TAG.SEQUENCE, 'CSR algorithm'))[0], TAG.OID, 'CSR algorithm'));
    signature = expectTag(sigNode, TAG.BIT_STRING, 'CSR signature').content.subarray(1);
  } catch (err) {
    throw csrError(CODE.CA_CSR_INVALID, `malformed request (${(err as Error).message})`, err);
  }
  const publicKey = checkPublicKey(spki, 'CSR key');
  const digest = SIGNATURE_DIGESTS[algorithmOid];
  if (digest === undefined) throw csrError(CODE.CA_CSR_INVALID, `unsupported signature algorithm ${algorithmOid}`);
  let valid = false;
  try {
    valid = verify(digest, info, publicKey, signature);
  } catch {
    valid = false;
  }
  if (!valid) throw csrError(CODE.CA_CSR_SIGNATURE, 'its signature does not match its public key');

  let subjectAltNames: SubjectAltNames | undefined;
  let requestsCa = false;
  try {
    // One extensionRequest with one value, and each extension in it once (RFC 5280 4.2): a request with two
    // SAN extensions would otherwise be judged on one of them while another implementation reads the other.
    let extensionRequests = 0;
    const seen = new Set<string>();
    for (const attribute of attributes) {
      const [idNode, valuesNode] = children(attribute);
      if (decodeOid(expectTag(idNode, TAG.OID, 'attribute id')) !== OID.extensionRequest) continue;
      if (++extensionRequests > 1) throw csrError(CODE.CA_CSR_DUPLICATE_EXTENSION, 'it carries more than one extensionRequest attribute');
      const values = children(expectTag(valuesNode, TAG.SET, 'attribute values'));
      if (values.length !== 1) throw csrError(CODE.CA_CSR_DUPLICATE_EXTENSION, `its extensionRequest attribute holds ${values.length} values, not one`);
      for (const ext of children(expectTag(values[0], TAG.SEQUENCE, 'requested extensions'))) {
        const parts = children(ext);
        const id = decodeOid(expectTag(parts[0], TAG.OID, 'extension id'));
        if (seen.has(id)) throw csrError(CODE.CA_CSR_DUPLICATE_EXTENSION, `it requests extension ${id} more than once`);
        seen.add(id);
        const value = readWhole(expectTag(parts[parts.length - 1], TAG.OCTET_STRING, 'extension value').content, 'extension');
        const critical = parts.length === 3 && decodeBoolean(expectTag(parts[1], TAG.BOOLEAN, 'critical'));
        if (id === OID.subjectAltName) subjectAltNames = decodeSubjectAltNames(value, critical);
        if (id === OID.basicConstraints) requestsCa = children(value).some((f) => f.tag === TAG.BOOLEAN && decodeBoolean(f));
      }
    }
  } catch (err) {
    if (err instanceof InputError && err.code === CODE.CA_CSR_DUPLICATE_EXTENSION) throw err;
    throw csrError(CODE.CA_CSR_INVALID, `malformed extension request (${(err as Error).message})`, err);
  }
  return Object.freeze({ spki, publicKey, subjectAltNames, requestsCa });
}

/**
 * Refuses a request that asks for anything but `identity`: other URIs, DNS names, IP addresses, or CA:true.
 * A request with no SAN at all is accepted (the CA names the identity).
 */
export function checkCsrAsksOnlyFor(csr: ParsedCsr, identity: SpiffeId): void {
  if (csr.requestsCa) throw csrError(CODE.CA_CSR_SAN_MISMATCH, 'it asks for a CA certificate');
  const sans = csr.subjectAltNames;
  if (sans === undefined) return;
  const wanted = identity.toString();
  const extra = [...sans.uris.filter((u) => u !== wanted), ...sans.dnsNames.map((d) => `DNS:${d}`)];
  if (extra.length > 0 || sans.others > 0 || sans.uris.length > 1) {
    const shown = extra.slice(0, 3).join(', ') + (sans.others > 0 ? ` and ${sans.others} other name(s)` : '');
    throw csrError(CODE.CA_CSR_SAN_MISMATCH, `it asks for names other than ${wanted}: ${shown || 'a repeated URI'}`);
  }
}

