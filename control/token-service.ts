/**
 * Join tokens as the operator sees them: create (signed, expiring, one service), list, revoke; and as
 * the API sees them: a `BootstrapAuthenticator`. The store keeps one record per token (never the token
 * itself), read on every use, so a revocation made offline on the data dir applies at once to a
 * running control plane.
 */
import { randomBytes } from 'node:crypto';
import { InputError, TrellisError } from '../common/errors.js';
import { workloadId } from '../ca/spiffe-id.js';
import type { AuthenticatedWorkload, BootstrapAuthenticator } from './authenticator.js';
import { JOIN_TOKEN_PREFIX, signJoinToken, verifyJoinTokenSignature } from './join-token.js';
import type { ControlStore, TokenRecord } from './store.js';
import { refuseReservedIssuance, refuseReservedToken } from './reserved-identity.js';
import { DEFAULT_ROOT_NAMESPACE } from '../policy/types.js';

/** A join token is for bootstrapping, not a long-lived secret: refuse TTLs beyond a year. */
export const MAX_TOKEN_TTL_MS = 365 * 86_400_000;

export interface CreatedToken {
  readonly record: TokenRecord;
  readonly token: string;
}

export class TokenService implements BootstrapAuthenticator {
  readonly kind = 'join-token';

  constructor(
    private readonly store: ControlStore,
    private readonly trustDomain: string,
    private readonly now: () => number = Date.now,
    /** The control plane's root namespace, reserved for the mesh's own identities. */
    private readonly rootNamespace: string = DEFAULT_ROOT_NAMESPACE,
  ) {}

  async create(service: string, namespace: string, ttlMs: number): Promise<CreatedToken> {
    // Validates both names with the SPIFFE rules before anything is written.
    workloadId(this.trustDomain, namespace, service);
    refuseReservedToken(namespace, service, this.rootNamespace);
    if (!Number.isFinite(ttlMs) || ttlMs <= 0 || ttlMs > MAX_TOKEN_TTL_MS) {
      throw new InputError('TRELLIS_TOKEN_TTL_INVALID', `token TTL must be between 1s and 365d (got ${ttlMs} ms)`);
    }
    const id = randomBytes(9).toString('base64url');
    const issuedAt = this.now();
    const expiresAt = issuedAt + ttlMs;
    const record: TokenRecord = Object.freeze({
      id, service, namespace,
      createdAt: new Date(issuedAt).toISOString(),
      expiresAt: new Date(expiresAt).toISOString(),
    });
    const key = await this.store.secret('token-signing-key');
    const token = signJoinToken({ id, trustDomain: this.trustDomain, namespace, service, issuedAt: Math.floor(issuedAt / 1000), expiresAt: Math.floor(expiresAt / 1000) }, key);
    await this.store.putToken(record);
    return { record, token };
  }

  async revoke(id: string): Promise<TokenRecord> {
    const record = await this.store.getToken(id);
    if (record === undefined) throw new InputError('TRELLIS_TOKEN_UNKNOWN', `no join token with id "${id}" (see \`trellis token list\`)`);
    if (record.revokedAt !== undefined) return record;
    const revoked: TokenRecord = Object.freeze({ ...record, revokedAt: new Date(this.now()).toISOString() });
    await this.store.putToken(revoked);
    return revoked;
  }

  list(): Promise<readonly TokenRecord[]> {
    return this.store.listTokens();
  }

  accepts(bearer: string): boolean {
    return bearer.startsWith(`${JOIN_TOKEN_PREFIX}.`);
  }

  async authenticate(bearer: string): Promise<AuthenticatedWorkload> {
    const claims = verifyJoinTokenSignature(bearer, await this.store.secret('token-signing-key'));
    if (claims.trustDomain !== this.trustDomain) {
      throw refused('TRELLIS_TOKEN_WRONG_TRUST_DOMAIN', `the join token is for trust domain "${claims.trustDomain}", this control plane serves "${this.trustDomain}"`);
    }
    if (claims.expiresAt * 1000 <= this.now()) {
      throw refused('TRELLIS_TOKEN_EXPIRED', `join token ${claims.id} expired at ${new Date(claims.expiresAt * 1000).toISOString()}; create a new one with \`trellis token create\``);
    }
    const record = await this.store.getToken(claims.id);
    if (record === undefined) throw refused('TRELLIS_TOKEN_UNKNOWN', `join token ${claims.id} is not known to this control plane`);
    if (record.revokedAt !== undefined) throw refused('TRELLIS_TOKEN_REVOKED', `join token ${claims.id} was revoked at ${record.revokedAt}`);
    if (record.service !== claims.service || record.namespace !== claims.namespace) {
      throw refused('TRELLIS_TOKEN_MISMATCH', `join token ${claims.id} does not match its record`);
    }
    // A token made before the namespace was reserved (or written into the store by hand) is refused too.
    refuseReservedIssuance(claims.namespace, claims.service, this.rootNamespace);
    return { namespace: claims.namespace, service: claims.service, credential: `join-token:${claims.id}` };
  }
}

function refused(code: string, message: string): TrellisError {
  return new TrellisError(code, message, { side: 'downstream' });
}
