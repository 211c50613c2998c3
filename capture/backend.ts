/**
 * Which iptables the system uses: nf_tables (iptables-nft) or the legacy x_tables (iptables-legacy).
 *
 * Both can be installed, and rules written through one are invisible to the other, so writing through the
 * wrong one silently captures nothing. `iptables --version` names the system's choice ("(nf_tables)" or
 * "(legacy)"). When that choice holds no rules at all but the other backend does (a kube-proxy or Docker
 * that was set up with the other one), the one in use wins: that is where the packets are being filtered.
 */
import { TrellisError } from '../common/errors.js';
import type { CommandRunner } from './command-runner.js';
import type { AddressFamily } from './rules.js';
import { CODE } from '../common/error-codes.js';

export type BackendKind = 'nft' | 'legacy';

export interface IptablesBackend {
  readonly kind: BackendKind;
  /** Why this backend was chosen, for `show` and logs. */
  readonly reason: string;
  save(family: AddressFamily): string;
  restore(family: AddressFamily): string;
}

/** "iptables v1.8.9 (nf_tables)" → nft, "iptables v1.8.7 (legacy)" → legacy; old builds print neither (legacy). */
export function parseBackendKind(versionOutput: string): BackendKind | null {
  if (/\(nf_tables\)/.test(versionOutput)) return 'nft';
  if (/\(legacy\)/.test(versionOutput)) return 'legacy';
  if (/^ip6?tables v1\.[0-6]\./m.test(versionOutput)) return 'legacy';
  return null;
}

function ruleCount(saveOutput: string): number {
  return saveOutput.split('\n').filter((line) => line.startsWith('-A ')).length;
}

interface Binaries {
  readonly save4: string;
  readonly restore4: string;
  readonly save6: string;
  readonly restore6: string;
}

async function exists(runner: CommandRunner, file: string): Promise<boolean> {
  return (await runner.run(file, ['--version'])).code === 0;
}

/** The kind-specific binaries (iptables-nft-save ...), or the plain ones when those report the same kind. */
async function binariesFor(runner: CommandRunner, kind: BackendKind, plainKind: BackendKind | null): Promise<Binaries | null> {
  const suffixed = { save4: `iptables-${kind}-save`, restore4: `iptables-${kind}-restore`, save6: `ip6tables-${kind}-save`, restore6: `ip6tables-${kind}-restore` };
  if (await exists(runner, suffixed.restore4)) return suffixed;
  if (plainKind === kind) return { save4: 'iptables-save', restore4: 'iptables-restore', save6: 'ip6tables-save', restore6: 'ip6tables-restore' };
  return null;
}

function backend(kind: BackendKind, reason: string, bin: Binaries): IptablesBackend {
  return Object.freeze({
    kind,
    reason,
    save: (family: AddressFamily) => (family === 4 ? bin.save4 : bin.save6),
    restore: (family: AddressFamily) => (family === 4 ? bin.restore4 : bin.restore6),
  });
}

/** Detects the backend, or uses `forced` (an operator's --backend) when given. */
export async function detectBackend(runner: CommandRunner, forced?: BackendKind): Promise<IptablesBackend> {
  const version = await runner.run('iptables', ['--version']);
  const plainKind = version.code === 0 ? parseBackendKind(version.stdout + version.stderr) : null;
  if (forced !== undefined) {
    const bin = await binariesFor(runner, forced, plainKind);
    if (bin === null) {
      throw new TrellisError(CODE.REDIRECT_BACKEND_MISSING, `iptables-${forced}-restore was not found on ${runner.where} (install iptables)`, { side: 'input' });
    }
    return backend(forced, `chosen with --backend ${forced}`, bin);
  }

  const candidates: { kind: BackendKind; bin: Binaries }[] = [];
  for (const kind of ['nft', 'legacy'] as const) {
    const bin = await binariesFor(runner, kind, plainKind);
    if (bin !== null) candidates.push({ kind, bin });
  }
  if (candidates.length === 0) {
    throw new TrellisError(
      CODE.REDIRECT_BACKEND_MISSING,
      `no usable iptables on ${runner.where}: neither iptables-nft-restore nor iptables-legacy-restore was found (install the iptables package)`,
      { side: 'input' },
    );
  }
  const preferred = candidates.find((c) => c.kind === plainKind) ?? candidates[0];
  if (preferred === undefined) throw new TrellisError(CODE.REDIRECT_BACKEND_MISSING, 'no iptables backend');
  const other = candidates.find((c) => c !== preferred);
  const plainReason = plainKind === null ? 'the only one installed' : `\`iptables --version\` says ${plainKind === 'nft' ? 'nf_tables' : 'legacy'}`;
  if (other !== undefined) {
    const [mine, theirs] = await Promise.all([runner.run(preferred.bin.save4, []), runner.run(other.bin.save4, [])]);
    if (mine.code === 0 && theirs.code === 0 && ruleCount(mine.stdout) === 0 && ruleCount(theirs.stdout) > 0) {
      return backend(other.kind, `${plainReason}, but only the ${other.kind} backend holds rules, so the system uses that one`, other.bin);
    }
  }
  return backend(preferred.kind, plainReason, preferred.bin);
}
