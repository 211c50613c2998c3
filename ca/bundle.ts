/**
 * Trust bundles: the root certificates a trust domain's peers accept, several at once so that a root can be
 * rotated without a failed request (add the new root, switch signing, later remove the old one).
 * Bundles are immutable; every change returns a new bundle whose `sequence` is one higher, and
 * `TrustBundle.accept` refuses an update whose sequence does not grow (the SPIFFE `spiffe_sequence` rule).
 */
import { createPublicKey } from 'node:crypto';
import { InputError } from '../common/errors.js';
import { certificatePem, fingerprintSha256, parseCertificateDer, parseCertificatesPem, type ParsedCertificate } from './certificate.js';
import { parseTrustDomain } from './spiffe-id.js';
import { CODE } from '../common/error-codes.js';

/** One key of a SPIFFE bundle document (RFC 7517 JWK plus `use`). */
export interface SpiffeBundleKey {
  readonly use: 'x509-svid';
  readonly kty: string;
  readonly x5c: readonly string[];
  readonly [field: string]: unknown;
}

/** The SPIFFE trust bundle format (SPIFFE_Trust_Domain_and_Bundle.md section 4). */
export interface SpiffeBundleDocument {
  readonly keys: readonly SpiffeBundleKey[];
  readonly spiffe_sequence: number;
  readonly spiffe_refresh_hint?: number;
}

/** Most roots a bundle may hold: rotation needs two, a merge of meshes a few more; more is a mistake. */
export const MAX_BUNDLE_ROOTS = 16;

export class TrustBundle {
  readonly trustDomain: string;
  readonly roots: readonly ParsedCertificate[];
  readonly sequence: number;

  private constructor(trustDomain: string, roots: readonly ParsedCertificate[], sequence: number) {
    if (roots.length === 0) throw new InputError(CODE.BUNDLE_EMPTY, `trust bundle for ${trustDomain} holds no root`);
    if (roots.length > MAX_BUNDLE_ROOTS) throw new InputError(CODE.BUNDLE_TOO_LARGE, `trust bundle for ${trustDomain} holds ${roots.length} roots (limit ${MAX_BUNDLE_ROOTS})`);
    if (!Number.isSafeInteger(sequence) || sequence < 0) throw new InputError(CODE.BUNDLE_INVALID, `trust bundle sequence must be a non-negative integer, got ${sequence}`);
    for (const root of roots) {
      if (root.basicConstraints?.ca !== true) {
        throw new InputError(CODE.BUNDLE_NOT_CA, `trust bundle for ${trustDomain}: certificate ${fingerprintSha256(root.der)} is not a CA certificate`);
      }
    }
    this.trustDomain = parseTrustDomain(trustDomain);
    const seen = new Set<string>();
    this.roots = Object.freeze(roots.filter((r) => (seen.has(r.der.toString('base64')) ? false : seen.add(r.der.toString('base64')))));
    this.sequence = sequence;
    Object.freeze(this);
  }

  static fromCertificates(trustDomain: string, roots: readonly ParsedCertificate[], sequence = 1): TrustBundle {
    return new TrustBundle(trustDomain, roots, sequence);
  }

  static fromPem(trustDomain: string, pem: string, sequence = 1): TrustBundle {
    return new TrustBundle(trustDomain, parseCertificatesPem(pem, `trust bundle for ${trustDomain}`), sequence);
  }

  /** Reads a SPIFFE bundle document (JSON text or parsed); only `x509-svid` keys are used. */
  static fromSpiffeJson(trustDomain: string, document: string | unknown): TrustBundle {
    let doc: unknown = document;
    if (typeof document === 'string') {
      try {
        doc = JSON.parse(document);
      } catch (err) {
        throw new InputError(CODE.BUNDLE_INVALID, `SPIFFE bundle for ${trustDomain} is not JSON`, { cause: err });
      }
    }
    const record = doc as { keys?: unknown; spiffe_sequence?: unknown };
    if (typeof doc !== 'object' || doc === null || !Array.isArray(record.keys)) {
      throw new InputError(CODE.BUNDLE_INVALID, `SPIFFE bundle for ${trustDomain} has no "keys" array`);
    }
    const sequence = record.spiffe_sequence ?? 0;
    if (typeof sequence !== 'number') throw new InputError(CODE.BUNDLE_INVALID, `SPIFFE bundle for ${trustDomain}: spiffe_sequence must be a number`);
    const roots: ParsedCertificate[] = [];
    record.keys.forEach((key: unknown, index: number) => {
      const k = key as { use?: unknown; x5c?: unknown };
      if (k.use !== 'x509-svid') return;
      if (!Array.isArray(k.x5c) || k.x5c.length !== 1 || typeof k.x5c[0] !== 'string') {
        throw new InputError(CODE.BUNDLE_INVALID, `SPIFFE bundle for ${trustDomain}: keys[${index}] (x509-svid) must have exactly one x5c certificate`);
      }
      roots.push(parseCertificateDer(Buffer.from(k.x5c[0], 'base64')));
    });
    return new TrustBundle(trustDomain, roots, sequence);
  }

  toPem(): string {
    return this.roots.map((r) => certificatePem(r.der)).join('');
  }

  toSpiffeJson(refreshHintSeconds?: number): SpiffeBundleDocument {
    const keys = this.roots.map((root): SpiffeBundleKey => {
      const jwk = createPublicKey({ key: root.spki, format: 'der', type: 'spki' }).export({ format: 'jwk' });
      return { use: 'x509-svid', ...jwk, kty: String(jwk.kty), x5c: [root.der.toString('base64')] };
    });
    const doc: SpiffeBundleDocument = { keys, spiffe_sequence: this.sequence };
    return refreshHintSeconds === undefined ? doc : { ...doc, spiffe_refresh_hint: refreshHintSeconds };
  }

  /** First step of rotation: trust a new root alongside the current ones. */
  withRoot(root: ParsedCertificate | string): TrustBundle {
    const added = typeof root === 'string' ? parseCertificatesPem(root, 'new root') : [root];
    return new TrustBundle(this.trustDomain, [...this.roots, ...added], this.sequence + 1);
  }

  /** Last step of rotation: stop trusting a retired root (by its SHA-256 fingerprint). The last root cannot go. */
  withoutRoot(fingerprint: string): TrustBundle {
    const wanted = normaliseFingerprint(fingerprint);
    const kept = this.roots.filter((r) => normaliseFingerprint(fingerprintSha256(r.der)) !== wanted);
    if (kept.length === this.roots.length) throw new InputError(CODE.BUNDLE_ROOT_UNKNOWN, `trust bundle for ${this.trustDomain} holds no root with fingerprint ${fingerprint}`);
    if (kept.length === 0) throw new InputError(CODE.BUNDLE_EMPTY, `refusing to remove the last root of the ${this.trustDomain} trust bundle`);
    return new TrustBundle(this.trustDomain, kept, this.sequence + 1);
  }

  /** Roots whose subject matches `cert`'s issuer name (signature not yet checked). */
  candidateIssuers(cert: ParsedCertificate): ParsedCertificate[] {
    return this.roots.filter((r) => r.subjectName.equals(cert.issuerName));
  }

  contains(cert: ParsedCertificate): boolean {
    return this.roots.some((r) => r.der.equals(cert.der));
  }

  /**
   * Takes an update of the same trust domain only if its sequence grew, so a replayed or reordered
   * older bundle can never bring back a retired root.
   */
  static accept(current: TrustBundle, incoming: TrustBundle): TrustBundle {
    if (incoming.trustDomain !== current.trustDomain) {
      throw new InputError(CODE.BUNDLE_TRUST_DOMAIN, `bundle update is for ${incoming.trustDomain}, expected ${current.trustDomain}`);
    }
    if (incoming.sequence <= current.sequence) {
      throw new InputError(CODE.BUNDLE_STALE, `bundle update for ${current.trustDomain} has sequence ${incoming.sequence}, not newer than ${current.sequence}`);
    }
    return incoming;
  }
}

function normaliseFingerprint(text: string): string {
  return text.replace(/:/g, '').toLowerCase();
}
