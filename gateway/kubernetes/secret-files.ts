/**
 * The TLS Secrets the listeners name, read through the API and written as files
 * (`<dir>/<namespace>/<name>/tls.crt`, `tls.key`, mode 0600, each replaced atomically) that the
 * listeners' certificate stores load and poll (tls-store.ts): a rotated Secret is a rewritten file, picked
 * up for new handshakes without dropping a connection, exactly as a mounted Secret volume would be. So
 * the Deployment needs no volume per Secret, only one private writable directory (an in-memory emptyDir:
 * keys never reach the node's disk). A file is rewritten only when the Secret's content changed.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/atomic-file.js';
import type { SecretPem } from './listener-plan.js';

/** A namespace or Secret name (RFC 1123): nothing that could climb out of the directory. */
const OBJECT_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export class SecretFiles {
  private readonly written = new Map<string, string>();

  constructor(readonly dir: string) {}

  /** Writes every Secret whose content is new; the key first, so a reader never pairs a new certificate with an old key for long. */
  async write(secrets: ReadonlyMap<string, SecretPem>): Promise<void> {
    for (const [key, pem] of secrets) {
      const content = `${pem.cert}\n${pem.key}`;
      if (this.written.get(key) === content) continue;
      const [namespace, name] = key.split('/') as [string, string];
      if (!OBJECT_NAME.test(namespace) || !OBJECT_NAME.test(name) || name.includes('..')) throw new Error(`Secret ${key}: not a Kubernetes object name`);
      const dir = join(this.dir, namespace, name);
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      await writeFileAtomic(join(dir, 'tls.key'), pem.key, { mode: 0o600 });
      await writeFileAtomic(join(dir, 'tls.crt'), pem.cert, { mode: 0o600 });
      this.written.set(key, content);
    }
  }

  /** Removes the files of Secrets no longer in `keep` (called once a config without them is in force). */
  async prune(keep: ReadonlyMap<string, SecretPem>): Promise<void> {
    for (const key of [...this.written.keys()]) {
      if (keep.has(key)) continue;
      const [namespace, name] = key.split('/') as [string, string];
      await fs.rm(join(this.dir, namespace, name), { recursive: true, force: true });
      this.written.delete(key);
    }
  }
}
