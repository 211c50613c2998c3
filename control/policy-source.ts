/**
 * The policy in force: loaded from `--policy DIR`, watched, and swapped whole.
 *
 * A change to the directory is noticed by fs.watch (debounced, so an editor's several writes make one
 * reload) and by a poll of the files' sizes and mtimes as a fallback where fs.watch misses events (some
 * network and container file systems). A directory that fails validation is rejected whole: the last
 * good policy stays in force, and the error (every issue, file:line:column) is kept for the admin port
 * and counted, until a later load succeeds.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../common/log.js';
import { describeError } from '../common/errors.js';
import { DebouncedWatch } from './debounced-watch.js';
import { configIssuesOf, formatConfigIssue } from '../common/yaml-source.js';
import { isPolicyFileName, loadPolicyAndTrafficDir } from '../policy/policy-loader.js';
import type { TrafficPermission } from '../policy/types.js';
import type { TrafficResource } from '../policy/traffic/types.js';

export interface PolicyState {
  readonly policies: readonly TrafficPermission[];
  /** Traffic-management resources (policy/traffic/) from the same directory; absent where the source has none. */
  readonly traffic?: readonly TrafficResource[];
  /** `sha256:<hex>` of the policies' canonical JSON; "empty" before anything loaded. */
  readonly revision: string;
  readonly loadedAt: string | undefined;
  /** The last load's failure, while the previous good policy stays in force. */
  readonly error: { readonly message: string; readonly issues: readonly string[]; readonly at: string } | undefined;
}

export interface PolicySourceOptions {
  readonly dir: string | undefined;
  readonly rootNamespace: string;
  readonly log: Logger;
  /** Editors write a file in several steps; wait this long after the last event before reloading. */
  readonly debounceMs?: number;
  readonly pollIntervalMs?: number;
  readonly onChange: (state: PolicyState) => void;
  readonly onError: (state: PolicyState) => void;
}

export function policyRevision(policies: readonly TrafficPermission[], traffic: readonly TrafficResource[] = []): string {
  if (policies.length === 0 && traffic.length === 0) return 'empty';
  const text = traffic.length === 0 ? JSON.stringify(policies) : JSON.stringify([policies, traffic]);
  return `sha256:${createHash('sha256').update(text).digest('hex').slice(0, 32)}`;
}

export class PolicySource {
  private current: PolicyState = Object.freeze({ policies: Object.freeze([]), revision: 'empty', loadedAt: undefined, error: undefined });
  private watch: DebouncedWatch | undefined;
  private signature = '';
  private loading: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly options: PolicySourceOptions) {}

  get state(): PolicyState {
    return this.current;
  }

  /** Loads once; an invalid directory at start is an error the caller reports (nothing to fall back on). */
  async start(): Promise<void> {
    const dir = this.options.dir;
    if (dir === undefined) return;
    this.signature = await this.filesSignature();
    const { policies, traffic } = await loadPolicyAndTrafficDir(dir, { rootNamespace: this.options.rootNamespace });
    this.current = Object.freeze({ policies: Object.freeze(policies), traffic: Object.freeze(traffic), revision: policyRevision(policies, traffic), loadedAt: new Date().toISOString(), error: undefined });
    this.watch = new DebouncedWatch({
      dir,
      changed: async () => (await this.filesSignature()) !== this.signature,
      onChange: () => void this.reload(),
      debounceMs: this.options.debounceMs ?? 150,
      pollIntervalMs: this.options.pollIntervalMs ?? 2_000,
      log: this.options.log,
      what: 'policy directory',
    });
    if (!this.closed) this.watch.start();
  }

  /** Reload now (also what the watcher triggers); resolves when the reload is done. */
  reload(): Promise<void> {
    this.loading = this.loading.then(() => this.load());
    return this.loading;
  }

  close(): void {
    this.closed = true;
    this.watch?.close();
  }

  private async load(): Promise<void> {
    const dir = this.options.dir;
    if (dir === undefined || this.closed) return;
    const signature = await this.filesSignature().catch(() => '');
    let policies: TrafficPermission[];
    let traffic: TrafficResource[];
    try {
      ({ policies, traffic } = await loadPolicyAndTrafficDir(dir, { rootNamespace: this.options.rootNamespace }));
    } catch (err) {
      this.signature = signature;
      const issues = configIssuesOf(err).map(formatConfigIssue);
      this.current = Object.freeze({ ...this.current, error: Object.freeze({ message: describeError(err), issues: Object.freeze(issues), at: new Date().toISOString() }) });
      this.options.log.error({ dir, issues: issues.length > 0 ? issues : undefined, err: describeError(err) }, 'policy rejected; the last good policy stays in force');
      this.options.onError(this.current);
      return;
    }
    this.signature = signature;
    const revision = policyRevision(policies, traffic);
    const changed = revision !== this.current.revision || this.current.error !== undefined;
    this.current = Object.freeze({ policies: Object.freeze(policies), traffic: Object.freeze(traffic), revision, loadedAt: new Date().toISOString(), error: undefined });
    if (changed) {
      this.options.log.info({ dir, revision, policies: policies.length, traffic: traffic.length }, 'policy loaded');
      this.options.onChange(this.current);
    }
  }

  private async filesSignature(): Promise<string> {
    const dir = this.options.dir as string;
    const names = (await fs.readdir(dir)).filter(isPolicyFileName).sort();
    const parts: string[] = [];
    for (const name of names) {
      const stat = await fs.stat(join(dir, name)).catch(() => undefined);
      if (stat !== undefined) parts.push(`${name}:${stat.size}:${stat.mtimeMs}`);
    }
    return parts.join('|');
  }
}
