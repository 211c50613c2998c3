/**
 * System requirements of a test suite (root, openssl, iptables, haproxy, network namespaces).
 * On a developer's machine a missing requirement skips the suite and says why; in CI (CI=true)
 * it fails the suite instead, because a green run that skipped half its tests proves nothing.
 *
 *   const need = requires({ tools: ['openssl'] });
 *   describe.skipIf(need.skip)('openssl agrees', () => { ... });
 */
import { execFileSync } from 'node:child_process';

export interface Requirements {
  readonly tools?: readonly string[];
  readonly root?: boolean;
}

export interface RequirementCheck {
  readonly skip: boolean;
  readonly reason: string;
}

function hasTool(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function requires(needs: Requirements): RequirementCheck {
  const missing: string[] = [];
  for (const tool of needs.tools ?? []) if (!hasTool(tool)) missing.push(tool);
  if (needs.root === true && process.getuid?.() !== 0) missing.push('root privileges');
  if (missing.length === 0) return { skip: false, reason: '' };
  const reason = `missing ${missing.join(', ')}`;
  if (process.env.CI === 'true') {
    throw new Error(`CI=true and this suite needs ${missing.join(', ')}: .ci/run must install it (no skipping in CI)`);
  }
  console.warn(`SKIPPED (${reason}): install it to run this suite; see .ci/run for the packages`);
  return { skip: true, reason };
}
