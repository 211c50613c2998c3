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
import { normaliseSerial, type RevokedSerial, type TokenRole } from '../api/control-protocol.js';
import type { ControlStore, TokenRecord } from './store.js';
import { refuseReservedToken, refuseReservedTokenUse } from './reserved-identity.js';
import { DEFAULT_ROOT_NAMESPACE } from '../policy/types.js';
import { CODE } from '../common/error-codes.js';

/** A join token is for bootstrapping, not a long-lived secret: refuse TTLs beyond a year. */
export const MAX_TOKEN_TTL_MS = 365 * 86_400_000;
/** Bootstraps one token may allow: a fleet larger than this gets several tokens (and several revocations). */
export const MAX_TOKEN_USES = 10_000;
export const DEFAULT_TOKEN_USES = 1;

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
    readonly rootNamespace: string = DEFAULT_ROOT_NAMESPACE,
  ) {}

  /** Serial → token id of every unexpired certificate issued through a token (loaded from the store once). */
  private lineage: Map<string, string> | undefined;
  /** One write at a time per token: a use or a renewal reads, checks and rewrites its record. */
  private readonly locks = new Map<string, Promise<unknown>>();

  /** `role` `ingress`: the zone ingress's token (its identity needs it; it names nothing else). */
  async create(service: string, namespace: string, ttlMs: number, uses: number = DEFAULT_TOKEN_USES, role?: TokenRole): Promise<CreatedToken> {
    // Validates both names with the SPIFFE rules before anything is written.
    workloadId(this.trustDomain, namespace, service);
    refuseReservedToken(namespace, service, this.rootNamespace, role);
    if (!Number.isFinite(ttlMs) || ttlMs <= 0 || ttlMs > MAX_TOKEN_TTL_MS) {
      throw new InputError(CODE.TOKEN_TTL_INVALID, `token TTL must be between 1s and 365d (got ${ttlMs} ms)`);
    }
    if (!Number.isInteger(uses) || uses < 1 || uses > MAX_TOKEN_USES) {
      throw new InputError(CODE.TOKEN_USES_INVALID, `token uses must be a whole number from 1 to ${MAX_TOKEN_USES} (got ${uses})`);
    }
    const id = randomBytes(9).toString('base64url');
    const issuedAt = this.now();
    const expiresAt = issuedAt + ttlMs;
    const record: TokenRecord = Object.freeze({
      id, service, namespace,
      createdAt: new Date(issuedAt).toISOString(),
      expiresAt: new Date(expiresAt).toISOString(),
      uses,
      usesLeft: uses,
      certificates: [],
      ...(role === undefined ? {} : { role }),
    });
    const key = await this.store.secret('token-signing-key');
    const token = signJoinToken({ id, trustDomain: this.trustDomain, namespace, service, issuedAt: Math.floor(issuedAt / 1000), expiresAt: Math.floor(expiresAt / 1000), ...(role === undefined ? {} : { role }) }, key);
    await this.store.putToken(record);
    return { record, token };
  }

  async revoke(id: string): Promise<TokenRecord> {
    const record = await this.store.getToken(id);
    if (record === undefined) throw new InputError(CODE.TOKEN_UNKNOWN, `no join token with id "${id}" (see \`trellis token list\`)`);
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
      throw refused(CODE.TOKEN_WRONG_TRUST_DOMAIN, `the join token is for trust domain "${claims.trustDomain}", this control plane serves "${this.trustDomain}"`);
    }
    if (claims.expiresAt * 1000 <= this.now()) {
      throw refused(CODE.TOKEN_EXPIRED, `join token ${claims.id} expired at ${new Date(claims.expiresAt * 1000).toISOString()}; create a new one with \`trellis token create\``);
    }
    const record = await this.store.getToken(claims.id);
    if (record === undefined) throw refused(CODE.TOKEN_UNKNOWN, `join token ${claims.id} is not known to this control plane`);
    if (record.revokedAt !== undefined) throw refused(CODE.TOKEN_REVOKED, `join token ${claims.id} was revoked at ${record.revokedAt}`);
    if (record.service !== claims.service || record.namespace !== claims.namespace || record.role !== claims.role) {
      throw refused(CODE.TOKEN_MISMATCH, `join token ${claims.id} does not match its record`);
    }
    // A token made before the namespace was reserved or the ingress's identity needed its role (or written
    // into the store by hand) is refused too.
    refuseReservedTokenUse(claims.namespace, claims.service, this.rootNamespace, claims.role);
    checkUsable(record);
    return {
      namespace: claims.namespace,
      service: claims.service,
      credential: `join-token:${claims.id}`,
      spend: (issue) => this.spend(claims.id, issue),
    };
  }

  /**
   * One bootstrap with token `id`: under the token's lock the record is read again (revoked or spent
   * meanwhile?), the certificate issued, and the decremented count and the new serial written (atomic
   * write, fsync) before the certificate is returned. A crash or a failed write hands out nothing.
   */
  private spend<T extends IssuedRef>(id: string, issue: () => Promise<T>): Promise<T> {
    return this.locked(id, async () => {
      const record = await this.store.getToken(id);
      if (record === undefined) throw refused(CODE.TOKEN_UNKNOWN, `join token ${id} is not known to this control plane`);
      checkUsable(record);
      const issued = await issue();
      await this.record(record, issued, true);
      return issued;
    });
  }

  /**
   * A renewal authenticated by the certificate with `serial`: when that certificate came from a join
   * token (directly or by renewal), the token must not be revoked, and the new certificate joins its
   * lineage. Certificates from other credentials (Kubernetes) renew without a lookup in the store.
   */
  async renew<T extends IssuedRef>(serial: string, issue: () => Promise<T>): Promise<T> {
    const id = (await this.lineageIndex()).get(normaliseSerial(serial));
    if (id === undefined) return issue();
    return this.locked(id, async () => {
      const record = await this.store.getToken(id);
      if (record === undefined) return issue();
      if (record.revokedAt !== undefined) {
        throw refused(CODE.TOKEN_REVOKED, `certificate ${normaliseSerial(serial)} was issued through join token ${id}, revoked at ${record.revokedAt}; bootstrap again with a new token`);
      }
      const issued = await issue();
      await this.record(record, issued, false);
      return issued;
    });
  }

  /** Unexpired certificates of revoked tokens, for the config snapshot; sorted, so equal lists compare equal. */
  async revokedSerials(): Promise<RevokedSerial[]> {
    const now = this.now();
    const out: RevokedSerial[] = [];
    for (const record of await this.store.listTokens()) {
      if (record.revokedAt === undefined) continue;
      for (const cert of record.certificates ?? []) if (Date.parse(cert.notAfter) > now) out.push({ serial: cert.serial, notAfter: cert.notAfter });
    }
    return out.sort((a, b) => a.serial.localeCompare(b.serial));
  }

  private async record(record: TokenRecord, issued: IssuedRef, use: boolean): Promise<void> {
    const now = this.now();
    const serial = normaliseSerial(issued.serial);
    // Expired certificates leave the lineage: they cannot renew or open a session any more.
    const certificates = [...(record.certificates ?? []).filter((c) => Date.parse(c.notAfter) > now), { serial, notAfter: issued.notAfter }];
    const usesLeft = use && record.usesLeft !== undefined ? { usesLeft: record.usesLeft - 1 } : {};
    await this.store.putToken(Object.freeze({ ...record, ...usesLeft, certificates }));
    (await this.lineageIndex()).set(serial, record.id);
  }

  private async lineageIndex(): Promise<Map<string, string>> {
    if (this.lineage === undefined) {
      const index = new Map<string, string>();
      const now = this.now();
      for (const record of await this.store.listTokens()) {
        for (const cert of record.certificates ?? []) if (Date.parse(cert.notAfter) > now) index.set(cert.serial, record.id);
      }
      this.lineage ??= index;
    }
    return this.lineage;
  }

  private locked<T>(id: string, work: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(id) ?? Promise.resolve();
    const next = previous.then(work, work);
    const settled = next.then(() => undefined, () => undefined);
    this.locks.set(id, settled);
    void settled.then(() => {
      if (this.locks.get(id) === settled) this.locks.delete(id);
    });
    return next;
  }
}

/** What a use or a renewal records of the certificate it issued. */
export interface IssuedRef {
  readonly serial: string;
  readonly notAfter: string;
}

function checkUsable(record: TokenRecord): void {
  if (record.revokedAt !== undefined) throw refused(CODE.TOKEN_REVOKED, `join token ${record.id} was revoked at ${record.revokedAt}`);
  if (record.usesLeft !== undefined && record.usesLeft <= 0) {
    throw refused(CODE.TOKEN_SPENT, `join token ${record.id} has been used ${record.uses ?? 0} time(s), all it allows; create a new one with \`trellis token create --uses N\``);
  }
}

function refused(code: string, message: string): TrellisError {
  return new TrellisError(code, message, { side: 'downstream' });
}
