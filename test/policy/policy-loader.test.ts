import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configIssuesOf } from '../../common/config-issues.js';
import { loadPolicyDir } from '../../policy/index.js';

const doc = (name: string, from = 'orders'): string =>
  `apiVersion: trellis.dev/v1alpha1\nkind: TrafficPermission\nmetadata: { name: ${name}, namespace: shop }\nspec: { destination: payments, rules: [{ action: allow, from: [${from}] }] }\n`;

describe('loading a policy directory', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'trellis-policy-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads *.yaml and *.yml files in name order, several documents each, and ignores other files', async () => {
    await writeFile(join(dir, 'b.yml'), doc('b'));
    await writeFile(join(dir, 'a.yaml'), `${doc('a1')}---\n${doc('a2')}`);
    await writeFile(join(dir, 'notes.txt'), 'not yaml: [');
    await writeFile(join(dir, '.hidden.yaml'), 'garbage: [');
    await mkdir(join(dir, 'sub.yaml'));
    const policies = await loadPolicyDir(dir);
    expect(policies.map((p) => p.metadata.name)).toEqual(['a1', 'a2', 'b']);
  });

  it('rejects the whole directory when one file is bad, naming the file and position', async () => {
    await writeFile(join(dir, 'a.yaml'), doc('a'));
    await writeFile(join(dir, 'b.yaml'), doc('b', '"Not A Label"'));
    const err = await loadPolicyDir(dir).catch((e: unknown) => e);
    const issues = configIssuesOf(err);
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ file: join(dir, 'b.yaml'), line: 4, path: 'spec.rules[0].from[0]' });
  });

  it('returns no policies for an empty directory, and refuses a missing one', async () => {
    expect(await loadPolicyDir(dir)).toEqual([]);
    await expect(loadPolicyDir(join(dir, 'missing'))).rejects.toMatchObject({ code: 'TRELLIS_POLICY_DIR_UNREADABLE' });
  });
});
