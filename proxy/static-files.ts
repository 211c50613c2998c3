/**
 * The files a static proxy config names, read after the config is validated: the identity's three PEM
 * files (read, checked as a usable TLS identity, and polled so certificates rotate without a restart)
 * and the policy files or directories.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { WorkloadIdentity } from '../api/data-plane.js';
import { InputError } from '../common/errors.js';
import { pollFiles } from '../common/file-poll.js';
import { CODE } from '../common/error-codes.js';
import { readConfigFile, type YamlText } from '../common/yaml-source.js';
import type { TrafficPermission } from '../policy/types.js';
import { isPolicyFileName } from '../policy/policy-loader.js';
import { parsePolicyFiles } from '../policy/validator.js';
import { buildTlsMaterial } from './core/tls-material.js';
import type { StaticProxyConfig } from './static-config.js';

/** Reads the three PEM files and checks that they make a usable TLS identity (key matches certificate). */
export async function readIdentityFiles(config: Pick<StaticProxyConfig, 'identity'>): Promise<WorkloadIdentity> {
  const read = async (path: string, what: string): Promise<string> => {
    try {
      return await fs.readFile(path, 'utf8');
    } catch (err) {
      throw new InputError(CODE.PROXY_IDENTITY_UNREADABLE, `${path}: cannot read the ${what} (${(err as Error).message})`, { cause: err });
    }
  };
  const [certChainPem, keyPem, trustBundlePem] = await Promise.all([
    read(config.identity.certificate, 'certificate'),
    read(config.identity.key, 'private key'),
    read(config.identity.trustBundle, 'trust bundle'),
  ]);
  const federatedBundles: Record<string, string> = {};
  for (const [td, path] of Object.entries(config.identity.federatedBundles ?? {})) federatedBundles[td] = await read(path, `federated trust bundle of ${td}`);
  const identity: WorkloadIdentity = Object.freeze({ certChainPem, keyPem, trustBundlePem, federatedBundles: Object.freeze(federatedBundles) });
  // Checks the pair and the federated bundles (one trust domain each, CA certificates, not our own).
  buildTlsMaterial(identity);
  return identity;
}

function identityFingerprint(identity: WorkloadIdentity): string {
  return identity.certChainPem + identity.trustBundlePem + JSON.stringify(identity.federatedBundles ?? {});
}

/**
 * Polls the identity files and calls `onChange` with the new identity when they changed and form a valid
 * pair again (common/file-poll.ts: a half-rotated pair is skipped until the key follows).
 */
export function watchIdentityFiles(
  config: Pick<StaticProxyConfig, 'identity'>,
  onChange: (identity: WorkloadIdentity) => void,
  onError: (err: unknown) => void,
  intervalMs = 1_000,
): () => void {
  return pollFiles({
    paths: [config.identity.certificate, config.identity.key, config.identity.trustBundle, ...Object.values(config.identity.federatedBundles ?? {})],
    read: () => readIdentityFiles(config),
    fingerprint: identityFingerprint,
    onChange,
    onError,
    intervalMs,
  });
}

/**
 * Reads every policy file named (directories: their *.yaml and *.yml files) and validates them together,
 * so every error of every file is reported at once and a duplicate across files is caught.
 */
export async function loadPolicyFiles(paths: readonly string[]): Promise<TrafficPermission[]> {
  const files: YamlText[] = [];
  for (const path of paths) {
    let isDir: boolean;
    try {
      isDir = (await fs.stat(path)).isDirectory();
    } catch (err) {
      throw new InputError(CODE.POLICY_UNREADABLE, `${path}: cannot read policy (${(err as Error).message})`, { cause: err });
    }
    if (!isDir) {
      files.push(await readConfigFile(path));
      continue;
    }
    const names = (await fs.readdir(path)).filter(isPolicyFileName).sort();
    for (const name of names) files.push(await readConfigFile(join(path, name)));
  }
  return parsePolicyFiles(files);
}
