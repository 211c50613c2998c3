/**
 * Loading a directory of policy files (`*.yaml`, `*.yml`, several `---` documents each allowed).
 * Files are read in name order so that errors and evaluation order do not depend on the file system.
 * Every file is validated before any policy is returned: one bad document rejects the whole directory.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../common/errors.js';
import { readConfigFile, type YamlText } from '../common/yaml-source.js';
import { parsePolicyFiles } from './validator.js';
import type { TrafficPermission, ValidationContext } from './types.js';
import { configInvalidError, configIssuesOf, type ConfigIssue } from '../common/config-issues.js';
import { parseTrafficFiles } from './traffic/validator.js';
import type { TrafficResource } from './traffic/types.js';
import { CODE } from '../common/error-codes.js';

/** A policy directory is operator-written; more files than this is a wrong path, not a policy set. */
export const MAX_POLICY_FILES = 10_000;

export function isPolicyFileName(name: string): boolean {
  return !name.startsWith('.') && (name.endsWith('.yaml') || name.endsWith('.yml'));
}

export async function loadPolicyDir(dir: string, options: ValidationContext = {}): Promise<TrafficPermission[]> {
  return parsePolicyFiles(await readPolicyFiles(dir), options);
}

/**
 * The permissions and the traffic-management resources of one directory, validated together: a problem in
 * either rejects both (every issue of both listed), so a directory applies whole or not at all.
 */
export async function loadPolicyAndTrafficDir(dir: string, options: ValidationContext = {}): Promise<{ policies: TrafficPermission[]; traffic: TrafficResource[] }> {
  return parsePolicyAndTraffic(await readPolicyFiles(dir), options);
}

/** Both kinds of one set of files, validated together (see `loadPolicyAndTrafficDir`). */
export function parsePolicyAndTraffic(files: readonly YamlText[], options: ValidationContext = {}): { policies: TrafficPermission[]; traffic: TrafficResource[] } {
  const issues: ConfigIssue[] = [];
  const attempt = <T>(parse: () => T): T | undefined => {
    try {
      return parse();
    } catch (err) {
      const found = configIssuesOf(err);
      if (found.length === 0) throw err;
      issues.push(...found);
      return undefined;
    }
  };
  const policies = attempt(() => parsePolicyFiles(files, options));
  const traffic = attempt(() => parseTrafficFiles(files));
  // A YAML syntax error is found by both parsers: list it once.
  const unique = [...new Map(issues.map((i) => [`${i.file}:${i.line}:${i.column}:${i.path}:${i.message}`, i])).values()];
  if (policies === undefined || traffic === undefined) throw configInvalidError('policy', unique);
  return { policies, traffic };
}

async function readPolicyFiles(dir: string): Promise<YamlText[]> {
  let names: string[];
  try {
    const entries = await fs.readdir(dir, { withFileTypes: true });
    names = entries.filter((e) => (e.isFile() || e.isSymbolicLink()) && isPolicyFileName(e.name)).map((e) => e.name);
  } catch (err) {
    throw new InputError(CODE.POLICY_DIR_UNREADABLE, `${dir}: cannot read policy directory (${(err as Error).message})`, { cause: err });
  }
  if (names.length > MAX_POLICY_FILES) {
    throw new InputError(CODE.POLICY_DIR_UNREADABLE, `${dir}: ${names.length} policy files is more than the limit of ${MAX_POLICY_FILES}`);
  }
  names.sort();
  const files: YamlText[] = [];
  for (const name of names) files.push(await readConfigFile(join(dir, name)));
  return files;
}
