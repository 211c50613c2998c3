/**
 * Join tokens: the bootstrap credential of a VM workload.
 *
 *   tjt1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(key, "tjt1." + claims))>
 *
 * Claims name exactly one service in one namespace of one trust domain, and an expiry. The control plane
 * that signed it is the only one that verifies it (the key never leaves its data dir), so a symmetric MAC
 * is enough; the record kept in the store makes every token listable and revocable by id.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { TrellisError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';
import type { TokenRole } from '../api/control-protocol.js';

export const JOIN_TOKEN_PREFIX = 'tjt1';
/** A token is ~250 bytes; a longer bearer is not one of ours and is refused before any parsing. */
export const MAX_JOIN_TOKEN_LENGTH = 2048;

export interface JoinTokenClaims {
  readonly id: string;
  readonly trustDomain: string;
  readonly namespace: string;
  readonly service: string;
  /** Seconds since the epoch. */
  readonly issuedAt: number;
  readonly expiresAt: number;
  /** Signed in (`rol`), so a token's role cannot be added or removed without the key. */
  readonly role?: TokenRole;
}

function mac(key: string, signed: string): Buffer {
  return createHmac('sha256', Buffer.from(key, 'base64url')).update(signed).digest();
}

export function signJoinToken(claims: JoinTokenClaims, key: string): string {
  return signTokenClaims(JOIN_TOKEN_PREFIX, { v: 1, jti: claims.id, td: claims.trustDomain, ns: claims.namespace, svc: claims.service, iat: claims.issuedAt, exp: claims.expiresAt, ...(claims.role === undefined ? {} : { rol: claims.role }) }, key);
}

/** `<prefix>.<base64url(JSON claims)>.<base64url(HMAC)>`: the format of join tokens and zone tokens alike. */
export function signTokenClaims(prefix: string, claims: Readonly<Record<string, unknown>>, key: string): string {
  const signed = `${prefix}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  return `${signed}.${mac(key, signed).toString('base64url')}`;
}

function refused(code: string, message: string): TrellisError {
  return new TrellisError(code, message, { side: 'downstream' });
}

/** Checks format and signature only; expiry and revocation are the caller's (they need the clock and the store). */
export function verifyJoinTokenSignature(token: string, key: string): JoinTokenClaims {
  const { v, jti, td, ns, svc, iat, exp, rol } = verifyTokenClaims(JOIN_TOKEN_PREFIX, 'join token', token, key);
  if (v !== 1 || typeof jti !== 'string' || typeof td !== 'string' || typeof ns !== 'string' || typeof svc !== 'string' || typeof iat !== 'number' || typeof exp !== 'number') {
    throw refused(CODE.TOKEN_MALFORMED, 'the join token claims are incomplete');
  }
  if (rol !== undefined && rol !== 'ingress') throw refused(CODE.TOKEN_MALFORMED, 'the join token names a role this control plane does not know');
  return Object.freeze({ id: jti, trustDomain: td, namespace: ns, service: svc, issuedAt: iat, expiresAt: exp, ...(rol === undefined ? {} : { role: rol }) });
}

/** The claims of a `<prefix>.<claims>.<mac>` token whose signature verifies with `key` (named `what` in errors). */
export function verifyTokenClaims(prefix: string, what: string, token: string, key: string): Record<string, unknown> {
  const text = token.trim();
  if (text.length > MAX_JOIN_TOKEN_LENGTH) throw refused(CODE.TOKEN_MALFORMED, `the ${what} is too long`);
  const parts = text.split('.');
  if (parts.length !== 3 || parts[0] !== prefix) throw refused(CODE.TOKEN_MALFORMED, `not a Trellis ${what} (expected ${prefix}.<claims>.<signature>)`);
  const signed = `${parts[0]}.${parts[1]}`;
  const given = Buffer.from(parts[2] as string, 'base64url');
  // Only the canonical encoding is accepted: base64url decoding ignores stray bits, so two spellings of
  // one token would otherwise both verify.
  if (given.toString('base64url') !== parts[2] || Buffer.from(parts[1] as string, 'base64url').toString('base64url') !== parts[1]) {
    throw refused(CODE.TOKEN_MALFORMED, `the ${what} is not canonically encoded`);
  }
  const expected = mac(key, signed);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw refused(CODE.TOKEN_BAD_SIGNATURE, `the ${what} was not signed by this control plane`);
  }
  try {
    const raw = JSON.parse(Buffer.from(parts[1] as string, 'base64url').toString('utf8')) as unknown;
    if (typeof raw === 'object' && raw !== null && !Array.isArray(raw)) return raw as Record<string, unknown>;
  } catch {
    // Reported below.
  }
  throw refused(CODE.TOKEN_MALFORMED, `the ${what} claims are not a JSON object`);
}
