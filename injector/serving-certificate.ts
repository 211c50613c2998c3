/**
 * Where the webhook's serving certificate comes from, and keeping it fresh without a restart.
 *
 * - `issued`: the injector signs its own certificate with the mesh CA mounted from a Secret
 *   (`--issuer-dir`), and renews it at two thirds of its lifetime (a failed renewal is retried every
 *   `retryMs` while the current certificate is still good). The issuer files are re-read at each renewal,
 *   so a rotated intermediate or a root added to the bundle reaches the API server's `caBundle`.
 * - `files`: another process (cert-manager, the operator) writes `--cert`/`--key` (and the CA bundle);
 *   they are polled and reloaded when their content changes.
 *
 * Either way a new certificate reaches the server through `onChange` (which calls `setSecureContext`
 * and syncs the caBundle); a broken one is refused, counted, logged, and the previous one stays in use.
 */
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { describeError, InputError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { InjectorMetrics } from './metrics.js';
import { issueServingCertificate, type IssuerPem, type ServingMaterial } from './serving-certificate-issuer.js';
import { CODE } from '../common/error-codes.js';

export type { ServingMaterial };

export type MaterialListener = (material: ServingMaterial) => Promise<void> | void;

export interface ServingCertificateSource {
  /** Loads the first certificate (throws if there is none usable) and starts watching or renewing. */
  start(onChange: MaterialListener): Promise<ServingMaterial>;
  stop(): void;
}

/** Largest PEM file read: a chain with a few certificates is a few KB. */
const MAX_PEM_BYTES = 256 * 1024;

async function readPem(path: string, what: string): Promise<string> {
  let handle;
  try {
    handle = await fs.open(path, 'r');
  } catch (err) {
    throw new InputError(CODE.INJECTOR_CERT_FILE, `${what}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  try {
    const stat = await handle.stat();
    if (stat.size > MAX_PEM_BYTES) throw new InputError(CODE.INJECTOR_CERT_FILE, `${what}: ${path} is larger than ${MAX_PEM_BYTES} bytes`);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

/** Checks that the key belongs to the leaf and reads its validity; throws TRELLIS_INJECTOR_CERT_INVALID. */
export function inspectMaterial(certChainPem: string, keyPem: string, caBundlePem: string): ServingMaterial {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certChainPem);
  } catch (err) {
    throw new InputError(CODE.INJECTOR_CERT_INVALID, 'the serving certificate is not a readable PEM certificate', { cause: err });
  }
  let matches = false;
  try {
    matches = leaf.checkPrivateKey(createPrivateKey({ key: keyPem, format: 'pem' }));
  } catch (err) {
    throw new InputError(CODE.INJECTOR_CERT_INVALID, 'the serving key is not a readable PEM private key', { cause: err });
  }
  if (!matches) throw new InputError(CODE.INJECTOR_CERT_INVALID, 'the serving key does not belong to the serving certificate');
  if (!caBundlePem.includes('-----BEGIN CERTIFICATE-----')) throw new InputError(CODE.INJECTOR_CERT_INVALID, 'the CA bundle holds no PEM certificate');
  return Object.freeze({ certChainPem, keyPem, caBundlePem, notBefore: new Date(leaf.validFrom), notAfter: new Date(leaf.validTo) });
}

export interface FileSourceOptions {
  readonly certFile: string;
  readonly keyFile: string;
  /** The CA bundle for the webhook configuration; the chain's last certificate when not given. */
  readonly caBundleFile?: string;
  readonly pollMs?: number;
  readonly logger: Logger;
  readonly metrics: InjectorMetrics;
}

export class FileServingSource implements ServingCertificateSource {
  private timer: NodeJS.Timeout | undefined;
  private fingerprint = '';

  constructor(private readonly options: FileSourceOptions) {}

  private async read(): Promise<ServingMaterial> {
    const cert = await readPem(this.options.certFile, 'serving certificate');
    const key = await readPem(this.options.keyFile, 'serving key');
    const bundle = this.options.caBundleFile === undefined ? lastCertificate(cert) : await readPem(this.options.caBundleFile, 'CA bundle');
    return inspectMaterial(cert, key, bundle);
  }

  async start(onChange: MaterialListener): Promise<ServingMaterial> {
    const first = await this.read();
    this.fingerprint = fingerprintOf(first);
    this.options.metrics.certificateReloads.inc({ result: 'loaded' });
    this.timer = setInterval(() => void this.poll(onChange), this.options.pollMs ?? 10_000);
    this.timer.unref();
    return first;
  }

  /** One check of the files (the timer calls it; tests call it directly). */
  async poll(onChange: MaterialListener): Promise<void> {
    let material: ServingMaterial;
    try {
      material = await this.read();
    } catch (err) {
      // Files are often replaced one at a time: a half-updated pair is retried at the next poll.
      this.options.metrics.certificateReloads.inc({ result: 'failed' });
      this.options.logger.warn({ err: describeError(err) }, 'serving certificate files unusable; keeping the current certificate');
      return;
    }
    const fingerprint = fingerprintOf(material);
    if (fingerprint === this.fingerprint) return;
    this.fingerprint = fingerprint;
    this.options.metrics.certificateReloads.inc({ result: 'loaded' });
    await deliver(onChange, material, this.options.logger);
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** Hands a new certificate over; a listener that throws is logged, never an unhandled rejection in a timer. */
async function deliver(onChange: MaterialListener, material: ServingMaterial, logger: Logger): Promise<void> {
  try {
    await onChange(material);
  } catch (err) {
    logger.error({ err: describeError(err) }, 'could not switch to the new serving certificate');
  }
}

function fingerprintOf(material: ServingMaterial): string {
  return createHash('sha256').update(material.certChainPem).update('\0').update(material.keyPem).update('\0').update(material.caBundlePem).digest('hex');
}

function lastCertificate(chainPem: string): string {
  const blocks = chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.length === 0 ? '' : `${blocks[blocks.length - 1]}\n`;
}

export interface IssuedSourceOptions {
  /** Reads the issuing CA each time a certificate is made. */
  readonly loadIssuer: () => Promise<IssuerPem>;
  readonly dnsNames: readonly string[];
  readonly ttlMs: number;
  /** Delay before retrying a failed renewal. */
  readonly retryMs?: number;
  readonly now?: () => Date;
  readonly logger: Logger;
  readonly metrics: InjectorMetrics;
}

/** Renew at two thirds of the lifetime: a third left covers an API server that caches the old bundle. */
export const RENEW_AT_FRACTION = 2 / 3;

export class IssuedServingSource implements ServingCertificateSource {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private current: ServingMaterial | undefined;

  constructor(private readonly options: IssuedSourceOptions) {}

  async start(onChange: MaterialListener): Promise<ServingMaterial> {
    this.stopped = false;
    const first = await this.issue();
    this.current = first;
    this.schedule(first, onChange);
    return first;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private now(): Date {
    return this.options.now?.() ?? new Date();
  }

  private async issue(): Promise<ServingMaterial> {
    const issuer = await this.options.loadIssuer();
    const material = await issueServingCertificate(issuer, this.options.dnsNames, this.options.ttlMs, this.now());
    this.options.metrics.certificateReloads.inc({ result: 'issued' });
    this.options.logger.info({ notAfter: material.notAfter.toISOString(), names: this.options.dnsNames }, 'serving certificate issued by the mesh CA');
    return material;
  }

  private schedule(material: ServingMaterial, onChange: MaterialListener): void {
    if (this.stopped) return;
    const lifetime = material.notAfter.getTime() - material.notBefore.getTime();
    const renewAt = material.notBefore.getTime() + lifetime * RENEW_AT_FRACTION;
    this.arm(Math.max(0, renewAt - this.now().getTime()), onChange);
  }

  private arm(delayMs: number, onChange: MaterialListener): void {
    if (this.stopped) return;
    // setTimeout takes at most 2^31-1 ms (~24.8 days); longer waits are re-armed when they fire.
    const capped = Math.min(delayMs, 2_147_483_647);
    this.timer = setTimeout(() => void this.renew(onChange), capped);
    this.timer.unref();
  }

  private async renew(onChange: MaterialListener): Promise<void> {
    let material: ServingMaterial;
    try {
      material = await this.issue();
    } catch (err) {
      this.options.metrics.certificateReloads.inc({ result: 'failed' });
      const left = (this.current?.notAfter.getTime() ?? 0) - this.now().getTime();
      this.options.logger.error({ err: describeError(err), msLeft: left }, 'serving certificate renewal failed; retrying');
      this.arm(this.options.retryMs ?? 30_000, onChange);
      return;
    }
    this.current = material;
    await deliver(onChange, material, this.options.logger);
    this.schedule(material, onChange);
  }
}

/** Reads a CA directory in the layout `trellis ca` writes (ca.crt, ca.key, bundle.pem). */
export function issuerFromDirectory(dir: string): () => Promise<IssuerPem> {
  return async () => {
    const certChainPem = await readPem(join(dir, 'ca.crt'), 'issuing CA certificate');
    const keyPem = await readPem(join(dir, 'ca.key'), 'issuing CA key');
    let bundlePem: string | undefined;
    try {
      bundlePem = await readPem(join(dir, 'bundle.pem'), 'trust bundle');
    } catch (err) {
      if ((err as InputError).code !== CODE.INJECTOR_CERT_FILE) throw err;
    }
    return bundlePem === undefined ? { certChainPem, keyPem } : { certChainPem, keyPem, bundlePem };
  };
}
