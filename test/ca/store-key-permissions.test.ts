/**
 * The CA key file rule: owner-only always; group-read only when the file is owned by root or by this
 * process and its group is one this process is in (a Kubernetes Secret with `defaultMode: 0440` and the
 * pod's fsGroup); group-write, group-execute and anything for others never. The rule as a table, then
 * on real files with real owners (the suite runs as root, which can chown them).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { chmodSync, chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRootCa } from '../../ca/authority.js';
import { currentAccessor, keyFileProblem, readCaFiles, type FileAccessor } from '../../ca/store.js';
import { requires } from '../helpers/requirements.js';

// A pod running as 10001 with runAsGroup 10001 and fsGroup 2000 (a supplementary group).
const POD: FileAccessor = { uid: 10001, gids: [10001, 2000] };
const KEY = '/etc/trellis/root-ca/ca.key';

describe('keyFileProblem', () => {
  const cases: [what: string, stat: { mode: number; uid: number; gid: number }, allowed: boolean][] = [
    ['0600 owned by this user', { mode: 0o100600, uid: 10001, gid: 10001 }, true],
    ['0400 owned by anyone (only the owner can read it)', { mode: 0o100400, uid: 4242, gid: 4242 }, true],
    ['0440 owned by root, group the fsGroup (a Secret volume)', { mode: 0o100440, uid: 0, gid: 2000 }, true],
    ['0640 owned by this user, its own primary group', { mode: 0o100640, uid: 10001, gid: 10001 }, true],
    ['0440 owned by another user', { mode: 0o100440, uid: 4242, gid: 2000 }, false],
    ['0440 owned by root, a group this process is not in', { mode: 0o100440, uid: 0, gid: 3000 }, false],
    ['0460 (group-write)', { mode: 0o100460, uid: 0, gid: 2000 }, false],
    ['0660 (group-write)', { mode: 0o100660, uid: 10001, gid: 10001 }, false],
    ['0450 (group-execute)', { mode: 0o100450, uid: 0, gid: 2000 }, false],
    ['0444 (world-read)', { mode: 0o100444, uid: 0, gid: 2000 }, false],
    ['0602 (world-write only)', { mode: 0o100602, uid: 10001, gid: 10001 }, false],
    ['0020 (group-write only)', { mode: 0o100620, uid: 10001, gid: 10001 }, false],
  ];
  for (const [what, stat, allowed] of cases) {
    it(`${allowed ? 'accepts' : 'refuses'} ${what}`, () => {
      const problem = keyFileProblem(KEY, stat, POD);
      if (allowed) expect(problem).toBeUndefined();
      else expect(problem).toContain(`CA key ${KEY} has mode 0${(stat.mode & 0o777).toString(8)} (owner uid ${stat.uid}, group gid ${stat.gid})`);
    });
  }

  it('says which part of the rule was broken, and the whole rule', () => {
    expect(keyFileProblem(KEY, { mode: 0o444, uid: 0, gid: 2000 }, POD)).toContain('others can access it');
    expect(keyFileProblem(KEY, { mode: 0o460, uid: 0, gid: 2000 }, POD)).toContain('its group can write or execute it');
    expect(keyFileProblem(KEY, { mode: 0o440, uid: 4242, gid: 2000 }, POD)).toContain('owned by uid 4242, neither root nor this process (uid 10001)');
    expect(keyFileProblem(KEY, { mode: 0o440, uid: 0, gid: 3000 }, POD)).toContain('readable by group 3000, which this process is not in (gids 10001, 2000)');
    expect(keyFileProblem(KEY, { mode: 0o440, uid: 0, gid: 3000 }, POD)).toContain('never writable by the group, never accessible to others');
  });

  it('allows only owner-only modes when the process has no POSIX ids', () => {
    expect(keyFileProblem(KEY, { mode: 0o600, uid: 0, gid: 0 }, undefined)).toBeUndefined();
    expect(keyFileProblem(KEY, { mode: 0o440, uid: 0, gid: 0 }, undefined)).toContain('neither root nor this process');
  });
});

const asRoot = requires({ root: true });

describe('readCaFiles on real files', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  async function savedCa(): Promise<string> {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-ca-store-'));
    dirs.push(dir);
    await (await createRootCa({ trustDomain: 'example.org' })).save(join(dir, 'root'));
    return join(dir, 'root');
  }

  it.skipIf(asRoot.skip)('reads a key mounted as a Kubernetes Secret would be (0440, owned by root, group the pod\'s fsGroup)', async () => {
    const dir = await savedCa();
    const key = join(dir, 'ca.key');
    chownSync(key, 0, 2000);
    chmodSync(key, 0o440);
    const pod: FileAccessor = { uid: 10001, gids: [10001, 2000] };
    expect((await readCaFiles(dir, pod)).keyPem).toContain('PRIVATE KEY');
    // The same file, read by a process outside the fsGroup, is refused with the file, mode and rule named.
    await expect(readCaFiles(dir, { uid: 10001, gids: [10001] })).rejects.toMatchObject({
      code: 'TRELLIS_CA_KEY_PERMISSIONS',
      message: expect.stringContaining(`CA key ${key} has mode 0440 (owner uid 0, group gid 2000)`),
    });
  });

  it('refuses a group-writable or world-readable key, for this process too', async () => {
    const dir = await savedCa();
    const key = join(dir, 'ca.key');
    const me = currentAccessor();
    for (const mode of [0o660, 0o644, 0o604]) {
      chmodSync(key, mode);
      await expect(readCaFiles(dir, me), mode.toString(8)).rejects.toMatchObject({ code: 'TRELLIS_CA_KEY_PERMISSIONS' });
    }
    chmodSync(key, 0o640);
    expect((await readCaFiles(dir, me)).keyPem).toContain('PRIVATE KEY');
  });
});
