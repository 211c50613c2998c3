/**
 * Root rotation reaching running agents: the operator's CA directory's `bundle.pem` is watched
 * (`DebouncedWatch`: fs.watch on the directory plus a poll of the content), and a changed bundle is
 * validated before use:
 * parsed as a trust bundle of this trust domain (CA certificates only, 1 to 16 roots), and the issuing
 * CAs must still chain to it (`CertificateAuthority.withBundle`), so a bundle that drops the root the
 * zone issues under can never reach agents and strand every workload.
 *
 * A bad file (garbage, a half-written copy, a missing root) is logged once per distinct content, counted
 * by `onRejected`, and ignored: the bundle in force stays until a valid one arrives.
 */
import { promises as fs } from 'node:fs';
import { basename, dirname } from 'node:path';
import { TrustBundle } from '../ca/bundle.js';
import type { CertificateAuthority } from '../ca/authority.js';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { DebouncedWatch } from './debounced-watch.js';

export interface TrustBundleWatchOptions {
  /** `<ca-dir>/bundle.pem`. */
  readonly path: string;
  readonly trustDomain: string;
  /** The CAs that must chain to any bundle taken (the operator's CA and the zone intermediate). */
  readonly issuers: readonly CertificateAuthority[];
  /** The bundle in force, as PEM. */
  readonly current: () => string;
  /** A valid bundle different from the one in force; `pem` is the normalised form (roots only, deduplicated). */
  readonly onChange: (pem: string, bundle: TrustBundle) => void | Promise<void>;
  readonly onRejected: (reason: string) => void;
  readonly log: Logger;
  readonly debounceMs?: number;
  readonly pollIntervalMs?: number;
}

export const TRUST_BUNDLE_WATCH_DEFAULTS = Object.freeze({ debounceMs: 200, pollIntervalMs: 5_000 });

/** `pem` as this mesh's trust bundle, or why it cannot be one. */
export function checkTrustBundle(pem: string, trustDomain: string, issuers: readonly CertificateAuthority[]): { readonly bundle?: TrustBundle; readonly problem?: string } {
  let bundle: TrustBundle;
  try {
    bundle = TrustBundle.fromPem(trustDomain, pem);
  } catch (err) {
    return { problem: describeError(err) };
  }
  for (const issuer of issuers) {
    try {
      issuer.withBundle(bundle);
    } catch (err) {
      return { problem: `the issuing CA would no longer be trusted: ${describeError(err)}` };
    }
  }
  return { bundle };
}

export class TrustBundleWatch {
  private watch: DebouncedWatch | undefined;
  /** The file content last looked at, valid or not: the same bad file is reported once. */
  private lastSeen: string | undefined;
  private checking: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly options: TrustBundleWatchOptions) {}

  /** Starts watching; the file as it is now is taken as seen (the caller loaded it at start). */
  async start(): Promise<void> {
    this.lastSeen = await this.read().catch(() => undefined);
    const name = basename(this.options.path);
    this.watch = new DebouncedWatch({
      dir: dirname(this.options.path),
      // `..data` and its kin: a Secret volume swaps a symlink rather than the file.
      relevant: (file) => file === null || file === name || file.startsWith('..'),
      changed: async () => (await this.read().catch(() => undefined)) !== this.lastSeen,
      onChange: () => void this.check(),
      debounceMs: this.options.debounceMs ?? TRUST_BUNDLE_WATCH_DEFAULTS.debounceMs,
      pollIntervalMs: this.options.pollIntervalMs ?? TRUST_BUNDLE_WATCH_DEFAULTS.pollIntervalMs,
      log: this.options.log,
      what: 'trust bundle',
    });
    if (!this.closed) this.watch.start();
  }

  /** Looks at the file now; resolves when any change it finds is applied (or refused). */
  check(): Promise<void> {
    this.checking = this.checking.then(() => this.examine());
    return this.checking;
  }

  close(): void {
    this.closed = true;
    this.watch?.close();
  }

  private async read(): Promise<string | undefined> {
    try {
      return await fs.readFile(this.options.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  private async examine(): Promise<void> {
    if (this.closed) return;
    let text: string | undefined;
    try {
      text = await this.read();
    } catch (err) {
      text = `unreadable: ${describeError(err)}`;
    }
    if (text === this.lastSeen) return;
    this.lastSeen = text;
    const { path, trustDomain } = this.options;
    const { bundle, problem } = text === undefined ? { problem: 'the file is missing', bundle: undefined } : checkTrustBundle(text, trustDomain, this.options.issuers);
    if (bundle === undefined) {
      const reason = problem ?? 'invalid';
      this.options.log.error({ path, reason }, 'trust bundle file rejected; the bundle in force stays');
      this.options.onRejected(reason);
      return;
    }
    const pem = bundle.toPem();
    if (pem === this.options.current()) return;
    this.options.log.info({ path, roots: bundle.roots.length }, 'trust bundle changed; pushing it to agents');
    await this.options.onChange(pem, bundle);
  }
}
