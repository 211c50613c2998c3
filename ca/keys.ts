/**
 * Keys: generation (ECDSA P-256 by default, P-384 on request), PEM import, the policy that refuses weak or
 * unknown public keys, and the signature algorithm a given CA key signs with.
 */
import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { InputError } from '../common/errors.js';
import { oid, sequence, tlv, TAG } from './der.js';
import { CODE } from '../common/error-codes.js';

const generateKeyPairAsync = promisify(generateKeyPair);

export type Curve = 'P-256' | 'P-384';
export const CURVES: readonly Curve[] = ['P-256', 'P-384'];

/** Smallest RSA modulus accepted in a CSR or a plug-in CA (NIST SP 800-57: 2048 bits through 2030). */
export const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 8192;

const NODE_CURVE: Readonly<Record<Curve, string>> = { 'P-256': 'prime256v1', 'P-384': 'secp384r1' };
const CURVE_OF_NODE: Readonly<Record<string, Curve>> = { prime256v1: 'P-256', secp384r1: 'P-384' };

export interface KeyPair {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

export async function generateKey(curve: Curve = 'P-256'): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPairAsync('ec', { namedCurve: NODE_CURVE[curve] });
  return { privateKey, publicKey };
}

export function parseCurve(text: string): Curve {
  const upper = text.toUpperCase();
  if (upper === 'P-256' || upper === 'P256') return 'P-256';
  if (upper === 'P-384' || upper === 'P384') return 'P-384';
  throw new InputError(CODE.CA_CURVE_UNSUPPORTED, `unsupported curve "${text}" (expected P-256 or P-384)`);
}

/** PKCS#8 PEM, the format node:tls and every other TLS stack reads. */
export function privateKeyPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** DER SubjectPublicKeyInfo of a public key, or of the public half of a private key. */
export function spkiDer(key: KeyObject): Buffer {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  return publicKey.export({ type: 'spki', format: 'der' });
}

export function importPrivateKeyPem(pem: string, what = 'private key'): KeyObject {
  try {
    return createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new InputError(CODE.CA_KEY_INVALID, `${what} is not a readable PEM private key`, { cause: err });
  }
}

/** What a key is, for `ca inspect` and error messages: "ECDSA P-256", "RSA 2048". */
export function describeKey(key: KeyObject): string {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') return `ECDSA ${CURVE_OF_NODE[details.namedCurve ?? ''] ?? details.namedCurve ?? 'unknown curve'}`;
  if (key.asymmetricKeyType === 'rsa') return `RSA ${details.modulusLength ?? '?'}`;
  return key.asymmetricKeyType ?? 'unknown';
}

/**
 * Accepts ECDSA P-256/P-384 and RSA 2048-8192 public keys; refuses everything else with a reason.
 * `spki` is the DER SubjectPublicKeyInfo from a CSR or certificate.
 */
export function checkPublicKey(spki: Buffer, what: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (err) {
    throw new InputError(CODE.CA_KEY_UNSUPPORTED, `${what}: unknown or unsupported public key (expected ECDSA P-256/P-384 or RSA ≥ ${MIN_RSA_BITS} bits)`, { cause: err });
  }
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    if (CURVE_OF_NODE[details.namedCurve ?? ''] === undefined) {
      throw new InputError(CODE.CA_KEY_UNSUPPORTED, `${what}: curve ${details.namedCurve ?? 'unknown'} is not accepted (expected P-256 or P-384)`);
    }
    return key;
  }
  if (key.asymmetricKeyType === 'rsa') {
    const bits = details.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) throw new InputError(CODE.CA_KEY_WEAK, `${what}: RSA key of ${bits} bits is too weak (minimum ${MIN_RSA_BITS})`);
    if (bits > MAX_RSA_BITS) throw new InputError(CODE.CA_KEY_UNSUPPORTED, `${what}: RSA key of ${bits} bits is larger than the ${MAX_RSA_BITS}-bit limit`);
    return key;
  }
  throw new InputError(CODE.CA_KEY_UNSUPPORTED, `${what}: ${key.asymmetricKeyType ?? 'unknown'} keys are not accepted (expected ECDSA P-256/P-384 or RSA ≥ ${MIN_RSA_BITS} bits)`);
}

/** How a key signs: the digest for node:crypto.sign and the DER AlgorithmIdentifier to put in the certificate. */
export interface SignatureAlgorithm {
  readonly digest: 'sha256' | 'sha384';
  readonly identifier: Buffer;
  readonly name: string;
}

const ECDSA_SHA256: SignatureAlgorithm = Object.freeze({ digest: 'sha256', identifier: sequence(oid('1.2.840.10045.4.3.2')), name: 'ecdsa-with-SHA256' });
const ECDSA_SHA384: SignatureAlgorithm = Object.freeze({ digest: 'sha384', identifier: sequence(oid('1.2.840.10045.4.3.3')), name: 'ecdsa-with-SHA384' });
const RSA_SHA256: SignatureAlgorithm = Object.freeze({
  digest: 'sha256',
  identifier: sequence(oid('1.2.840.113549.1.1.11'), tlv(TAG.NULL, Buffer.alloc(0))),
  name: 'sha256WithRSAEncryption',
});

export function signatureAlgorithmFor(key: KeyObject): SignatureAlgorithm {
  if (key.asymmetricKeyType === 'ec') return key.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? ECDSA_SHA384 : ECDSA_SHA256;
  if (key.asymmetricKeyType === 'rsa') return RSA_SHA256;
  throw new InputError(CODE.CA_KEY_UNSUPPORTED, `cannot sign with a ${key.asymmetricKeyType ?? 'unknown'} key`);
}

/** Signature algorithm OIDs accepted on CSRs and certificates, mapped to node:crypto digests. */
export const SIGNATURE_DIGESTS: Readonly<Record<string, 'sha256' | 'sha384' | 'sha512'>> = Object.freeze({
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
});
