/**
 * The README's quick start: `trellis demo` starts a mesh, shows an allowed and two denied calls with the
 * deciding rules, exits 0, and leaves no process and no temp dir behind.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { cleanup, requireBuild, trellis } from './mesh-support.js';

afterAll(cleanup);

describe('trellis demo', { timeout: 90_000 }, () => {
  it('runs the whole mesh, shows the policy holding, exits 0 and cleans up', async () => {
    requireBuild();
    const { code, stdout, stderr } = await trellis(['demo']).then((r) => r, (err: unknown) => { throw err; });
    expect(stderr).not.toMatch(/trellis demo:/);
    expect(code).toBe(0);
    expect(stdout).toContain('spiffe://trellis.local/ns/demo/sa/frontend');
    expect(stdout).toMatch(/frontend → orders:\s+HTTP 201/);
    expect(stdout).toMatch(/orders → payments:\s+HTTP 403, trellis-denied-by: default-deny/);
    expect(stdout).toMatch(/frontend → payments: HTTP 403, trellis-denied-by: demo\/payments-callers#1/);
    expect(stdout).toMatch(/trellis_policy_denials_total\{.*policy="demo\/payments-callers",rule="1"/);
    expect(stdout).toContain('Everything behaved as the policy says.');
    const dirs = /files kept in (\S+)/.exec(stderr);
    expect(dirs).toBeNull();
    const left = execFileSync('ps', ['-eo', 'args']).toString().split('\n').filter((l) => l.includes('trellis-demo-'));
    expect(left).toEqual([]);
  });
});
