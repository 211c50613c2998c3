/**
 * The policy directory: a change applies, an invalid file is rejected whole with file:line errors while
 * the last good policy stays in force, and fixing the file clears the error. The watcher's debounce is
 * set beyond the test so that only the explicit reloads run; test/e2e/mesh-policy.test.ts covers the watch.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../common/log.js';
import { PolicySource, type PolicyState } from '../../control/policy-source.js';

const doc = (name: string, from: string) => `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: ${name}, namespace: shop }
spec:
  destination: orders
  mode: enforce
  rules:
    - action: allow
      from: [${from}]
`;

let dir: string;
let source: PolicySource;
let changes: PolicyState[];
let errors: PolicyState[];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'trellis-policy-'));
  changes = [];
  errors = [];
});
afterEach(() => {
  source?.close();
  rmSync(dir, { recursive: true, force: true });
});

function make(): PolicySource {
  return new PolicySource({ dir, rootNamespace: 'trellis-system', log: silentLogger(), debounceMs: 60_000, pollIntervalMs: 60_000, onChange: (s) => changes.push(s), onError: (s) => errors.push(s) });
}

describe('PolicySource', () => {
  it('loads, applies a change, keeps the last good policy when a file is invalid, and recovers', async () => {
    writeFileSync(join(dir, 'a.yaml'), doc('a', 'frontend'));
    source = make();
    await source.start();
    expect(source.state.policies.map((p) => p.spec.rules[0]?.from)).toEqual([['frontend']]);
    const first = source.state.revision;

    writeFileSync(join(dir, 'a.yaml'), doc('a', 'billing'));
    await source.reload();
    expect(changes).toHaveLength(1);
    expect(source.state.revision).not.toBe(first);

    writeFileSync(join(dir, 'b.yaml'), doc('b', 'frontend').replace('action: allow', 'action: permit'));
    await source.reload();
    expect(errors).toHaveLength(1);
    expect(source.state.error?.issues.join('\n')).toMatch(new RegExp(`${join(dir, 'b.yaml')}:8:\\d+: .*action`));
    expect(source.state.policies.map((p) => p.metadata.name)).toEqual(['a']);

    rmSync(join(dir, 'b.yaml'));
    await source.reload();
    expect(source.state.error).toBeUndefined();
    expect(changes).toHaveLength(2);
  });

  it('refuses to start on an invalid directory (nothing to fall back on)', async () => {
    writeFileSync(join(dir, 'a.yaml'), 'kind: [');
    source = make();
    await expect(source.start()).rejects.toThrow(/a\.yaml:1/);
  });

  it('loads traffic resources beside the permissions, and rejects the directory whole for a bad one', async () => {
    writeFileSync(join(dir, 'a.yaml'), doc('a', 'frontend'));
    writeFileSync(join(dir, 't.yaml'), 'apiVersion: trellis.dev/v1alpha1\nkind: RetryPolicy\nmetadata: { name: r, namespace: shop }\nspec:\n  destination: orders\n  attempts: 2\n');
    source = make();
    await source.start();
    expect(source.state.traffic?.map((t) => t.kind)).toEqual(['RetryPolicy']);
    const revision = source.state.revision;
    writeFileSync(join(dir, 't.yaml'), 'apiVersion: trellis.dev/v1alpha1\nkind: RetryPolicy\nmetadata: { name: r, namespace: shop }\nspec:\n  destination: orders\n  attempts: 0\n');
    await source.reload();
    expect(errors.at(-1)?.error?.issues.join('\n')).toContain('t.yaml:6:13: spec.attempts: expected an integer from 1 to 10, got 0');
    expect(source.state.revision).toBe(revision);
    expect(source.state.traffic?.[0]?.spec).toMatchObject({ attempts: 2 });
  });
});
