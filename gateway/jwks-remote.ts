/**
 * A JWT provider's keys fetched from an HTTPS URL, held as the last good set.
 *
 * - Fetched at start, then every `refreshMs`; a token naming a key id the set lacks fetches again at once,
 *   at most once per `JWKS_LIMITS.unknownKeyCooldownMs` (a flood of made-up key ids cannot hammer the
 *   issuer), and concurrent callers share one fetch.
 * - The server's certificate is checked against the provider's `caFile` (read again for every fetch, so a
 *   rotated CA is picked up), else the system roots; no redirects are followed.
 * - A fetch that fails (unreachable, non-200, over `JWKS_LIMITS.fetchTimeoutMs`, a body over
 *   `JWKS_LIMITS.maxBytes`) or brings a document that is not a usable key set (not JSON, no `keys`, more
 *   than `JWKS_LIMITS.maxKeys`, a symmetric key, a key without `kty`) changes nothing: the keys in force
 *   stay, the failure is logged and counted, and the next fetch comes at the refresh (sooner, every
 *   `JWKS_LIMITS.retryMs`, while no set was ever loaded).
 */
import { readFile } from 'node:fs/promises';
import { get, type RequestOptions } from 'node:https';
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { Logger } from '../common/log.js';

export interface JwksLimits {
  readonly fetchTimeoutMs: number;
  readonly maxBytes: number;
  readonly maxKeys: number;
  readonly unknownKeyCooldownMs: number;
  readonly retryMs: number;
}

export const JWKS_LIMITS: JwksLimits = Object.freeze({
  /** Connect, TLS and the whole body, per fetch. */
  fetchTimeoutMs: 5_000,
  maxBytes: 256 * 1024,
  maxKeys: 64,
  unknownKeyCooldownMs: 30_000,
  /** Between fetches while no key set was ever loaded. */
  retryMs: 5_000,
});

export interface RemoteJwksSpec {
  readonly provider: string;
  readonly url: string;
  readonly caFile?: string;
  readonly refreshMs: number;
}

export type FetchOutcome = 'fetched' | 'unchanged' | 'failed';

export interface RemoteJwksOptions {
  /** Overrides for tests (a short cooldown); the defaults are JWKS_LIMITS. */
  readonly limits?: Partial<JwksLimits>;
  /** Each fetch's outcome, for metrics. */
  readonly onFetch?: (outcome: FetchOutcome, detail?: string) => void;
}

export class RemoteJwks {
  private keys: JWTVerifyGetKey | undefined;
  private text: string | undefined;
  private inFlight: Promise<FetchOutcome> | undefined;
  private lastUnknownFetch = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  lastError: string | undefined;
  private readonly limits: JwksLimits;
  private readonly first: Promise<FetchOutcome>;

  constructor(private readonly spec: RemoteJwksSpec, private readonly log: Logger, private readonly options: RemoteJwksOptions = {}) {
    this.limits = { ...JWKS_LIMITS, ...options.limits };
    this.first = this.fetch();
  }

  /** The keys in force, after the first fetch has settled (a verify waits for it rather than refuse). */
  async current(): Promise<JWTVerifyGetKey | undefined> {
    if (this.keys === undefined) await this.first;
    return this.keys;
  }

  /** A token names a key the set lacks: fetch again unless one was fetched for that reason within the cooldown. */
  async unknownKey(): Promise<boolean> {
    const now = Date.now();
    if (this.inFlight === undefined && now - this.lastUnknownFetch < this.limits.unknownKeyCooldownMs) return false;
    this.lastUnknownFetch = now;
    return (await this.fetch()) === 'fetched';
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  private fetch(): Promise<FetchOutcome> {
    this.inFlight ??= this.fetchOnce().finally(() => {
      this.inFlight = undefined;
      this.schedule();
    });
    return this.inFlight;
  }

  private schedule(): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.fetch(), this.keys === undefined ? Math.min(this.limits.retryMs, this.spec.refreshMs) : this.spec.refreshMs);
    this.timer.unref();
  }

  private async fetchOnce(): Promise<FetchOutcome> {
    let outcome: FetchOutcome;
    let detail: string | undefined;
    try {
      const ca = this.spec.caFile === undefined ? undefined : await readFile(this.spec.caFile, 'utf8');
      const text = await fetchText(this.spec.url, ca, this.limits);
      if (text === this.text) outcome = 'unchanged';
      else {
        this.keys = createLocalJWKSet(parseKeySet(text, this.limits.maxKeys));
        this.text = text;
        outcome = 'fetched';
        this.log.info({ provider: this.spec.provider, url: this.spec.url }, 'JWKS fetched');
      }
      this.lastError = undefined;
    } catch (err) {
      outcome = 'failed';
      detail = (err as Error).message;
      this.lastError = detail;
      this.log.warn({ provider: this.spec.provider, url: this.spec.url, err: detail, keysInForce: this.keys !== undefined }, 'JWKS not fetched; the keys in force stay');
    }
    this.options.onFetch?.(outcome, detail);
    return outcome;
  }
}

/** One GET of the key set: status 200, a body within the size limit, all within the timeout. */
function fetchText(url: string, ca: string | undefined, limits: JwksLimits): Promise<string> {
  const options: RequestOptions = { headers: { accept: 'application/json, application/jwk-set+json' }, timeout: limits.fetchTimeoutMs, ...(ca === undefined ? {} : { ca }), agent: false };
  return new Promise((resolve, reject) => {
    let settled = false;
    // The first outcome wins; a refusal also ends the exchange (a body arriving after it is not read).
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      req.destroy();
      reject(err);
    };
    const req = get(url, options, (res) => {
      if (res.statusCode !== 200) return fail(new Error(`the JWKS server answered ${res.statusCode ?? 0} (redirects are not followed)`));
      const declared = Number(res.headers['content-length'] ?? 0);
      if (declared > limits.maxBytes) return fail(new Error(`the JWKS document is ${declared} bytes, over the limit of ${limits.maxBytes}`));
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > limits.maxBytes) fail(new Error(`the JWKS document is over the limit of ${limits.maxBytes} bytes`));
        else chunks.push(chunk);
      });
      res.on('end', () => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        resolve(Buffer.concat(chunks).toString('utf8'));
      });
      res.on('error', fail);
    });
    // Whole-fetch deadline: node's `timeout` is per inactivity, a server trickling bytes would evade it.
    const deadline = setTimeout(() => fail(new Error(`the JWKS fetch took over ${limits.fetchTimeoutMs} ms`)), limits.fetchTimeoutMs);
    req.on('timeout', () => fail(new Error(`the JWKS server was silent for ${limits.fetchTimeoutMs} ms`)));
    req.on('error', fail);
  });
}

/** A JWKS document the verifier may use, or a throw saying why not. */
export function parseKeySet(text: string, maxKeys: number): JSONWebKeySet {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new Error('the JWKS document is not JSON');
  }
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new Error('the JWKS document has no "keys" list');
  if (keys.length === 0) throw new Error('the JWKS document lists no key');
  if (keys.length > maxKeys) throw new Error(`the JWKS document lists ${keys.length} keys, over the limit of ${maxKeys}`);
  keys.forEach((k: unknown, i) => {
    const kty = (k as { kty?: unknown } | null)?.kty;
    if (typeof kty !== 'string') throw new Error(`keys[${i}] has no "kty"`);
    // Symmetric keys would let anyone holding the set sign tokens; only public keys belong in a JWKS.
    if (kty === 'oct') throw new Error(`keys[${i}] is a symmetric ("oct") key`);
    if ((k as { d?: unknown }).d !== undefined) throw new Error(`keys[${i}] carries private key material`);
  });
  return doc as JSONWebKeySet;
}
