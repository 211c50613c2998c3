/**
 * Zone tokens: how a zone control plane joins the global one, on the join-token model (join-token.ts):
 * HMAC-signed claims naming one zone of one trust domain and an expiry, a record per token in the
 * global's store (listable, revocable, single use by default), read again on every use. A use issues the
 * zone its certificate (spiffe://<td>/ns/<root-ns>/sa/trellis-zone-<zone>); revoking the token refuses
 * every certificate issued through it, renewals included, at the next connection.
 *
 *   tzt1.<base64url({v, jti, td, zone, iat, exp})>.<base64url(HMAC-SHA256)>
 */
import { randomBytes } from 'node:crypto';
import { InputError, TrellisError, isTrellisError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';
import { normaliseSerial } from '../../api/control-protocol.js';
import { signTokenClaims, verifyTokenClaims } from '../join-token.js';
import { MAX_TOKEN_TTL_MS, MAX_TOKEN_USES } from '../token-service.js';
import { ZONE_NAME } from '../zone-sync/protocol.js';
import type { GlobalStore, ZoneTokenRecord } from './global-store.js';

export const ZONE_TOKEN_PREFIX = 'tzt1';

function invalid(message: string, cause?: unknown): TrellisError {
  return new TrellisError(CODE.ZONE_TOKEN_INVALID, message, { side: 'downstream', ...(cause === undefined ? {} : { cause }) });
}

export class ZoneTokenService {
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(
    private readonly store: GlobalStore,
    private readonly trustDomain: string,
    private readonly now: () => number = Date.now,
  ) {}

  async create(zone: string, ttlMs: number, uses = 1): Promise<{ record: ZoneTokenRecord; token: string }> {
    if (!ZONE_NAME.test(zone)) throw new InputError(CODE.CLI_USAGE, `--zone: "${zone}" must be a DNS label`);
    if (!Number.isFinite(ttlMs) || ttlMs <= 0 || ttlMs > MAX_TOKEN_TTL_MS) throw new InputError(CODE.TOKEN_TTL_INVALID, `token TTL must be between 1s and 365d (got ${ttlMs} ms)`);
    if (!Number.isInteger(uses) || uses < 1 || uses > MAX_TOKEN_USES) throw new InputError(CODE.TOKEN_USES_INVALID, `token uses must be a whole number from 1 to ${MAX_TOKEN_USES}`);
    const id = randomBytes(9).toString('base64url');
    const issuedAt = this.now();
    const record: ZoneTokenRecord = Object.freeze({
      id, zone, createdAt: new Date(issuedAt).toISOString(), expiresAt: new Date(issuedAt + ttlMs).toISOString(), uses, usesLeft: uses, certificates: [],
    });
    const claims = { v: 1, jti: id, td: this.trustDomain, zone, iat: Math.floor(issuedAt / 1000), exp: Math.floor((issuedAt + ttlMs) / 1000) };
    const token = signTokenClaims(ZONE_TOKEN_PREFIX, claims, await this.store.secret('token-signing-key'));
    await this.store.putZoneToken(record);
    return { record, token };
  }

  async revoke(id: string): Promise<ZoneTokenRecord> {
    const record = await this.store.getZoneToken(id);
    if (record === undefined) throw new InputError(CODE.ZONE_UNKNOWN, `no zone token with id "${id}" (see \`trellis zone token list\`)`);
    if (record.revokedAt !== undefined) return record;
    const revoked = Object.freeze({ ...record, revokedAt: new Date(this.now()).toISOString() });
    await this.store.putZoneToken(revoked);
    return revoked;
  }

  list(): Promise<ZoneTokenRecord[]> {
    return this.store.listZoneTokens();
  }

  /**
   * Checks `bearer` for `zone` and, under the token's lock, re-reads its record, issues, and records the
   * use and the certificate before the certificate is returned.
   */
  async spend<T extends { serial: string; notAfter: string }>(bearer: string, zone: string, issue: () => Promise<T>): Promise<T> {
    let claims: Record<string, unknown>;
    try {
      claims = verifyTokenClaims(ZONE_TOKEN_PREFIX, 'zone token', bearer, await this.store.secret('token-signing-key'));
    } catch (err) {
      throw invalid(isTrellisError(err) ? err.message : 'the zone token cannot be read', err);
    }
    const { v, jti, td, exp } = claims;
    if (v !== 1 || typeof jti !== 'string' || typeof td !== 'string' || typeof claims.zone !== 'string' || typeof exp !== 'number') throw invalid('the zone token claims are incomplete');
    if (td !== this.trustDomain) throw invalid(`the zone token is for trust domain "${td}", this global control plane serves "${this.trustDomain}"`);
    if (claims.zone !== zone) {
      throw new TrellisError(CODE.ZONE_NAME_MISMATCH, `the zone token is for zone "${claims.zone}", and this control plane says it is "${zone}"`, { side: 'downstream' });
    }
    if (exp * 1000 <= this.now()) throw invalid(`zone token ${jti} expired at ${new Date(exp * 1000).toISOString()}`);
    return this.locked(jti, async () => {
      const record = await this.store.getZoneToken(jti);
      if (record === undefined || record.zone !== zone) throw invalid(`zone token ${jti} is not known to this global control plane`);
      if (record.revokedAt !== undefined) throw invalid(`zone token ${jti} was revoked at ${record.revokedAt}`);
      if (record.usesLeft <= 0) throw invalid(`zone token ${jti} has been used ${record.uses} time(s), all it allows; create a new one`);
      const issued = await issue();
      await this.remember(record, issued, true);
      return issued;
    });
  }

  /** A renewal by a zone certificate: refused when it came from a revoked token; the new one joins the lineage. */
  async renew<T extends { serial: string; notAfter: string }>(serial: string, issue: () => Promise<T>): Promise<T> {
    const record = await this.tokenOf(serial);
    if (record === undefined) throw invalid(`certificate ${normaliseSerial(serial)} was not issued through a zone token of this global control plane`);
    if (record.revokedAt !== undefined) throw invalid(`certificate ${normaliseSerial(serial)} was issued through zone token ${record.id}, revoked at ${record.revokedAt}`);
    return this.locked(record.id, async () => {
      const issued = await issue();
      await this.remember((await this.store.getZoneToken(record.id)) ?? record, issued, false);
      return issued;
    });
  }

  /** Whether a zone certificate may connect: issued through a token of ours that is not revoked. */
  async check(serial: string): Promise<void> {
    const record = await this.tokenOf(serial);
    if (record === undefined) throw invalid(`certificate ${normaliseSerial(serial)} was not issued through a zone token of this global control plane`);
    if (record.revokedAt !== undefined) throw invalid(`certificate ${normaliseSerial(serial)} was issued through zone token ${record.id}, revoked at ${record.revokedAt}`);
  }

  private async tokenOf(serial: string): Promise<ZoneTokenRecord | undefined> {
    const wanted = normaliseSerial(serial);
    return (await this.store.listZoneTokens()).find((r) => r.certificates.some((c) => c.serial === wanted));
  }

  private async remember(record: ZoneTokenRecord, issued: { serial: string; notAfter: string }, use: boolean): Promise<void> {
    const now = this.now();
    const certificates = [...record.certificates.filter((c) => Date.parse(c.notAfter) > now), { serial: normaliseSerial(issued.serial), notAfter: issued.notAfter }];
    await this.store.putZoneToken(Object.freeze({ ...record, usesLeft: use ? record.usesLeft - 1 : record.usesLeft, certificates }));
  }

  private locked<T>(id: string, work: () => Promise<T>): Promise<T> {
    const next = (this.locks.get(id) ?? Promise.resolve()).then(work, work);
    const settled = next.then(() => undefined, () => undefined);
    this.locks.set(id, settled);
    void settled.then(() => {
      if (this.locks.get(id) === settled) this.locks.delete(id);
    });
    return next;
  }
}
