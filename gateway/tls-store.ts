/**
 * The operator certificates of one HTTPS listener, chosen by SNI, and reloaded from disk without
 * dropping a connection: a new set of secure contexts is built from the files and swapped in whole, so
 * handshakes after the swap use it and connections already open keep theirs. A set that fails to load
 * (a key that does not match, a half-written file) is refused whole and the set in force stays.
 *
 * Selection: the certificate whose `hosts` holds the SNI name exactly, else the most specific wildcard,
 * else the first certificate (also for clients that send no SNI, e.g. by IP address).
 */
import { promises as fs } from 'node:fs';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { InputError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';
import { pollFiles } from '../common/file-poll.js';
import type { Logger } from '../common/log.js';
import type { CertificateSpec, ListenerSpec } from './config-types.js';
import { hostMatches, hostSpecificity } from './host-match.js';

interface LoadedSet {
  readonly contexts: readonly { readonly hosts: readonly string[]; readonly context: SecureContext }[];
  readonly fingerprint: string;
  /** The first certificate's options: what a client that sends no SNI gets (`tls.Server#setSecureContext`). */
  readonly defaults: SecureContextOptions;
}

/** Only modern suites: TLS 1.3's own, and TLS 1.2 with ECDHE and AEAD (Mozilla's "intermediate" list). */
const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

async function loadOne(spec: CertificateSpec, minVersion: string, clientCa: string | undefined): Promise<{ hosts: readonly string[]; context: SecureContext; pem: string; options: SecureContextOptions }> {
  let cert: string;
  let key: string;
  try {
    [cert, key] = await Promise.all([fs.readFile(spec.certificate, 'utf8'), fs.readFile(spec.key, 'utf8')]);
  } catch (err) {
    throw new InputError(CODE.GATEWAY_CERT_INVALID, `cannot read ${spec.certificate} or ${spec.key}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const leaf = new X509Certificate(cert);
    if (!leaf.checkPrivateKey(createPrivateKey(key))) throw new Error('the key does not match the certificate');
    const options: SecureContextOptions = { cert, key, minVersion: minVersion as 'TLSv1.2', ciphers: TLS12_CIPHERS, ...(clientCa === undefined ? {} : { ca: clientCa }) };
    return { hosts: spec.hosts, context: createSecureContext(options), pem: cert, options };
  } catch (err) {
    throw new InputError(CODE.GATEWAY_CERT_INVALID, `${spec.certificate}: ${(err as Error).message}`, { cause: err });
  }
}

export class CertificateStore {
  private current: LoadedSet;
  private stopPolling: (() => void) | undefined;

  private constructor(
    private readonly spec: NonNullable<ListenerSpec['tls']>,
    private readonly clientCa: string | undefined,
    initial: LoadedSet,
  ) {
    this.current = initial;
  }

  /** Loads every certificate of the listener; throws (TRELLIS_GATEWAY_CERT_INVALID) when any is unusable. */
  static async load(spec: NonNullable<ListenerSpec['tls']>): Promise<CertificateStore> {
    let clientCa: string | undefined;
    if (spec.clientCertificate !== undefined) {
      try {
        clientCa = await fs.readFile(spec.clientCertificate.caFile, 'utf8');
      } catch (err) {
        throw new InputError(CODE.GATEWAY_CERT_INVALID, `cannot read the client CA ${spec.clientCertificate.caFile}: ${(err as Error).message}`, { cause: err });
      }
    }
    return new CertificateStore(spec, clientCa, await CertificateStore.read(spec, clientCa));
  }

  private static async read(spec: NonNullable<ListenerSpec['tls']>, clientCa: string | undefined): Promise<LoadedSet> {
    const loaded = await Promise.all(spec.certificates.map((c) => loadOne(c, spec.minVersion, clientCa)));
    return { contexts: loaded.map(({ hosts, context }) => ({ hosts, context })), fingerprint: loaded.map((l) => l.pem).join('\n'), defaults: (loaded[0] as { options: SecureContextOptions }).options };
  }

  /** The context for an SNI name (undefined name: the default, the first certificate). */
  contextFor(servername: string | undefined): SecureContext {
    const set = this.current.contexts;
    const fallback = (set[0] as { context: SecureContext }).context;
    if (servername === undefined || servername === '') return fallback;
    const name = servername.toLowerCase();
    let best: SecureContext | undefined;
    let bestScore = -1;
    for (const entry of set) {
      for (const pattern of entry.hosts) {
        if (!hostMatches(pattern, name)) continue;
        const score = hostSpecificity(pattern);
        if (score > bestScore) [best, bestScore] = [entry.context, score];
      }
    }
    return best ?? fallback;
  }

  /** The default context's options (the first certificate), for clients that send no SNI. */
  defaults(): SecureContextOptions {
    return this.current.defaults;
  }

  /** Polls the certificate and key files; a set that reads clean replaces the one in force. */
  watch(log: Logger, listener: string, onReloaded: () => void, intervalMs = 1_000): void {
    const paths = this.spec.certificates.flatMap((c) => [c.certificate, c.key]);
    this.stopPolling = pollFiles({
      paths,
      read: () => CertificateStore.read(this.spec, this.clientCa),
      fingerprint: (set) => set.fingerprint,
      onChange: (set) => {
        this.current = set;
        log.info({ listener, certificates: set.contexts.length }, 'listener certificates reloaded');
        onReloaded();
      },
      onError: (err) => log.warn({ listener, err: (err as Error).message }, 'listener certificates not reloaded; the ones in force stay'),
      intervalMs,
    });
  }

  stop(): void {
    this.stopPolling?.();
  }
}
