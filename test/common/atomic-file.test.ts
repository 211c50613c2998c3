import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ORPHAN_MIN_AGE_MS, removeOrphanedTempFiles, writeFileAtomic } from '../../common/atomic-file.js';
import { AgentStateDir } from '../../agent/state-dir.js';
import { writeCaFiles } from '../../ca/store.js';
import { setUpZoneCas } from '../../control/ca-setup.js';
import { FileStore } from '../../control/file-store.js';

describe('writeFileAtomic', () => {
  const dirs: string[] = [];
  const tempDir = (): string => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-atomic-'));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('replaces content whole and leaves no temporary file', async () => {
    const dir = tempDir();
    const file = join(dir, 'state.json');
    writeFileSync(file, 'old');
    await writeFileAtomic(file, 'new');
    expect(readFileSync(file, 'utf8')).toBe('new');
    expect(readdirSync(dir)).toEqual(['state.json']);
  });

  it('creates secrets with mode 0600', async () => {
    const file = join(tempDir(), 'key.pem');
    await writeFileAtomic(file, 'secret', { mode: 0o600 });
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('refuses to overwrite in exclusive mode and keeps the old content', async () => {
    const dir = tempDir();
    const file = join(dir, 'root.key');
    writeFileSync(file, 'original');
    await expect(writeFileAtomic(file, 'intruder', { exclusive: true })).rejects.toMatchObject({ code: 'EEXIST' });
    expect(readFileSync(file, 'utf8')).toBe('original');
    expect(readdirSync(dir)).toEqual(['root.key']);
  });
});

describe('orphaned temporary files', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  const old = (path: string): void => utimesSync(path, new Date(Date.now() - 10 * 60_000), new Date(Date.now() - 10 * 60_000));

  it('are removed from the control data dir, the CA store and the agent state dir at start; real files stay', async () => {
    const root = mkdtempSync(join(tmpdir(), 'trellis-orphans-'));
    dirs.push(root);
    const data = join(root, 'data');
    const agent = join(root, 'agent');
    const caDir = join(root, 'operator-ca');
    for (const dir of [join(data, 'tokens'), join(data, 'registrations'), join(data, 'ca'), join(agent, 'identity'), caDir]) mkdirSync(dir, { recursive: true });
    const orphans = [
      join(data, '.admin-token.0123456789ab.tmp'),
      join(data, 'tokens', '.abc.json.0123456789ab.tmp'),
      join(data, 'registrations', '.r1.json.a1b2c3d4e5f6.tmp'),
      join(data, 'ca', '.zone-default.key.00aa11bb22cc.tmp'),
      join(agent, '.snapshot.json.0123456789ab.tmp'),
      join(agent, 'identity', '.key.pem.0123456789ab.tmp'),
      join(caDir, '.ca.key.0123456789ab.tmp'),
    ];
    for (const file of orphans) {
      writeFileSync(file, 'half');
      old(file);
    }
    const kept = [join(data, 'tokens', 'abc.json'), join(agent, 'identity', 'cert.pem'), join(data, 'notes.tmp'), join(data, '.keep')];
    for (const file of kept) {
      writeFileSync(file, 'real');
      old(file);
    }
    // One being written right now by another process (young): left alone.
    const young = join(data, 'tokens', '.def.json.ffffffffffff.tmp');
    writeFileSync(young, 'in flight');

    await FileStore.open(data);
    await setUpZoneCas({ dataDir: data, caDir: undefined, trustDomain: 'example.org', zone: 'default' });
    await AgentStateDir.open(agent);
    await writeCaFiles(caDir, { certChainPem: 'c', keyPem: 'k', bundlePem: 'b' });

    for (const file of orphans) expect(existsSync(file), file).toBe(false);
    for (const file of [...kept, young]) expect(existsSync(file), file).toBe(true);
    expect(readFileSync(join(data, 'tokens', 'abc.json'), 'utf8')).toBe('real');
  });

  it('removeOrphanedTempFiles names what it removed and ignores a missing directory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-orphans-'));
    dirs.push(dir);
    writeFileSync(join(dir, '.state.json.0123456789ab.tmp'), 'half');
    expect(await removeOrphanedTempFiles(dir, Date.now() + ORPHAN_MIN_AGE_MS)).toEqual(['.state.json.0123456789ab.tmp']);
    expect(await removeOrphanedTempFiles(join(dir, 'missing'))).toEqual([]);
  });
});
