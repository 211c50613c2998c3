/**
 * JWT validation with `jose`, one verifier per provider. Keys come from a JWKS file (re-read when it
 * changes, common/file-poll.ts) or an HTTPS URL (jwks-remote.ts: fetched at start and every `refresh`,
 * again at most every 30 s when a token names an unknown key, so a rotated signing key is picked up and a
 * flood of bogus key ids cannot hammer the issuer; the last good set stays while the server is down or
 * serves a bad document).
 *
 * Refused: no token, a malformed one, `alg: none` and HMAC (only the provider's asymmetric algorithms are
 * accepted), a signature no key of the set verifies, the wrong issuer or audience, expired or not yet
 * valid (with the provider's clock skew). A token over 8 KiB is refused before parsing.
 */
import { promises as fs } from 'node:fs';
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { pollFiles } from '../common/file-poll.js';
import type { Logger } from '../common/log.js';
import type { JwtProviderSpec } from './config-types.js';
import { RemoteJwks, type RemoteJwksOptions } from './jwks-remote.js';

const MAX_TOKEN_BYTES = 8 * 1024;

export type JwtOutcome = { readonly ok: true; readonly claims: JWTPayload } | { readonly ok: false; readonly reason: string; readonly keysUnavailable?: boolean };

export class JwtVerifier {
  private keys: JWTVerifyGetKey | undefined;
  private stop: (() => void) | undefined;
  private loadError: string | undefined;
  private readonly remote: RemoteJwks | undefined;

  constructor(private readonly spec: JwtProviderSpec, private readonly log: Logger, remoteOptions: RemoteJwksOptions = {}) {
    const jwks = spec.jwks;
    if ('url' in jwks) {
      const remote = new RemoteJwks({ provider: spec.name, url: jwks.url, refreshMs: spec.refreshMs, ...(jwks.caFile === undefined ? {} : { caFile: jwks.caFile }) }, log, remoteOptions);
      this.remote = remote;
      this.keys = async (header, token) => {
        const set = (await remote.current()) as JWTVerifyGetKey;
        try {
          return await set(header, token);
        } catch (err) {
          // A key id the set lacks may be a new signing key: fetch again (rate-limited) and look once more.
          if (!(err instanceof joseErrors.JWKSNoMatchingKey) || !(await remote.unknownKey())) throw err;
          return ((await remote.current()) as JWTVerifyGetKey)(header, token);
        }
      };
      this.stop = () => remote.close();
      return;
    }
    const read = async (): Promise<JWTVerifyGetKey> => createLocalJWKSet(JSON.parse(await fs.readFile(jwks.file, 'utf8')) as Parameters<typeof createLocalJWKSet>[0]);
    read().then(
      (k) => (this.keys = k),
      (err: unknown) => {
        this.loadError = (err as Error).message;
        log.error({ provider: spec.name, file: jwks.file, err: this.loadError }, 'JWKS file unusable; tokens of this provider are refused until it is fixed');
      },
    );
    this.stop = pollFiles({
      paths: [jwks.file],
      read,
      fingerprint: () => String(Date.now()),
      onChange: (k) => {
        this.keys = k;
        this.loadError = undefined;
        log.info({ provider: spec.name }, 'JWKS file reloaded');
      },
      onError: (err) => log.warn({ provider: spec.name, err: (err as Error).message }, 'JWKS file not reloaded; the keys in force stay'),
      intervalMs: Math.min(spec.refreshMs, 5_000),
    });
  }

  /** Waits for a file key set's first read (tests, start-up). */
  async ready(): Promise<void> {
    for (let i = 0; i < 100 && this.keys === undefined && this.loadError === undefined && !('url' in this.spec.jwks); i++) await new Promise((r) => setTimeout(r, 10));
  }

  async verify(token: string): Promise<JwtOutcome> {
    if (token.length > MAX_TOKEN_BYTES) return { ok: false, reason: `token over ${MAX_TOKEN_BYTES} bytes` };
    if (this.remote !== undefined && (await this.remote.current()) === undefined) return { ok: false, reason: `no keys for provider ${this.spec.name}: ${this.remote.lastError ?? 'not fetched yet'}`, keysUnavailable: true };
    if (this.keys === undefined) return { ok: false, reason: `no keys for provider ${this.spec.name}${this.loadError === undefined ? '' : `: ${this.loadError}`}`, keysUnavailable: true };
    try {
      const { payload } = await jwtVerify(token, this.keys, {
        issuer: this.spec.issuer,
        ...(this.spec.audiences.length === 0 ? {} : { audience: [...this.spec.audiences] }),
        algorithms: [...this.spec.algorithms],
        clockTolerance: Math.round(this.spec.clockSkewMs / 1000),
      });
      return { ok: true, claims: payload };
    } catch (err) {
      return { ok: false, reason: reason(err) };
    }
  }

  close(): void {
    this.stop?.();
  }
}

function reason(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'token expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `claim ${err.claim} ${err.reason}`;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'signature algorithm not allowed';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'signature does not verify';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'no key of the set matches the token';
  if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) return 'malformed token';
  return (err as Error).message.slice(0, 200);
}
