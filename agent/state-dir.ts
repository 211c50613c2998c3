/**
 * What the agent keeps on disk when the operator gives it `--data-dir`: its instance id, its current
 * certificate and key (0600, the only place the key is ever written), and the last good config snapshot.
 * With them an agent that restarts while the control plane is down comes back serving as before.
 * Without `--data-dir` nothing is written and a restart needs the control plane.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { removeOrphanedTempFiles, writeFileAtomic, readFileIfExists } from '../common/atomic-file.js';
import type { WorkloadIdentity } from '../api/data-plane.js';
import type { VersionedSnapshot } from './config-state.js';

const INSTANCE_ID = /^[A-Za-z0-9_-]{1,128}$/;

export class AgentStateDir {
  private constructor(readonly dir: string) {}

  static async open(dir: string): Promise<AgentStateDir> {
    await fs.mkdir(join(dir, 'identity'), { recursive: true, mode: 0o700 });
    // Orphans of a crash between write and rename (a key among them: they are 0600, but still litter).
    for (const folder of [dir, join(dir, 'identity')]) await removeOrphanedTempFiles(folder);
    return new AgentStateDir(dir);
  }

  /** Stable across restarts, so the control plane sees the same instance come back, not a new one. */
  async instanceId(): Promise<string> {
    const file = join(this.dir, 'instance-id');
    const existing = (await readFileIfExists(file))?.trim();
    if (existing !== undefined && INSTANCE_ID.test(existing)) return existing;
    const created = randomBytes(12).toString('base64url');
    await writeFileAtomic(file, `${created}\n`);
    return created;
  }

  async loadIdentity(): Promise<WorkloadIdentity | undefined> {
    const [certChainPem, keyPem, trustBundlePem] = await Promise.all(['cert.pem', 'key.pem', 'bundle.pem'].map((f) => readFileIfExists(join(this.dir, 'identity', f))));
    if (certChainPem === undefined || keyPem === undefined || trustBundlePem === undefined) return undefined;
    return { certChainPem, keyPem, trustBundlePem };
  }

  async saveIdentity(identity: WorkloadIdentity): Promise<void> {
    // Key first, then the certificate that names it: a crash in between leaves a pair that fails to load
    // (a mismatched key is caught when the identity is parsed) rather than a certificate without its key.
    await writeFileAtomic(join(this.dir, 'identity', 'key.pem'), identity.keyPem, { mode: 0o600 });
    await writeFileAtomic(join(this.dir, 'identity', 'cert.pem'), identity.certChainPem);
    await writeFileAtomic(join(this.dir, 'identity', 'bundle.pem'), identity.trustBundlePem);
  }

  async loadSnapshot(): Promise<VersionedSnapshot | undefined> {
    const text = await readFileIfExists(join(this.dir, 'snapshot.json'));
    if (text === undefined) return undefined;
    const value = JSON.parse(text) as Partial<VersionedSnapshot>;
    if (typeof value !== 'object' || value === null || typeof value.version !== 'number' || typeof value.epoch !== 'string' || typeof value.snapshot !== 'object') {
      throw new Error(`${join(this.dir, 'snapshot.json')} is not a saved snapshot`);
    }
    return value as VersionedSnapshot;
  }

  async saveSnapshot(snapshot: VersionedSnapshot): Promise<void> {
    await writeFileAtomic(join(this.dir, 'snapshot.json'), JSON.stringify({ ...snapshot, savedAt: new Date().toISOString() }));
  }
}
