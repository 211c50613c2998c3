/**
 * `<data-dir>/control.json`: what the data dir belongs to (trust domain, zone, root namespace) and where
 * its control plane last listened. It stops a data dir from being started under another trust domain
 * (every certificate it issued would become foreign), and lets `trellis token` work offline on the data
 * dir or find the running API without more flags.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../common/atomic-file.js';
import { InputError } from '../common/errors.js';
import { storeCorrupt } from './file-store.js';
import { CODE } from '../common/error-codes.js';

export interface DataDirIdentity {
  readonly trustDomain: string;
  readonly zone: string;
  readonly rootNamespace: string;
  /** `https://host:port` of the API, as last started. */
  readonly api?: string;
}

export const IDENTITY_FILE = 'control.json';

export async function readDataDirIdentity(dataDir: string): Promise<DataDirIdentity | undefined> {
  const file = join(dataDir, IDENTITY_FILE);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let value: Partial<DataDirIdentity>;
  try {
    value = JSON.parse(text) as Partial<DataDirIdentity>;
  } catch (err) {
    throw storeCorrupt(file, `not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value.trustDomain !== 'string' || typeof value.zone !== 'string' || typeof value.rootNamespace !== 'string') {
    throw storeCorrupt(file, 'expected trustDomain, zone and rootNamespace');
  }
  return Object.freeze({ trustDomain: value.trustDomain, zone: value.zone, rootNamespace: value.rootNamespace, ...(typeof value.api === 'string' ? { api: value.api } : {}) });
}

/** Refuses a data dir made for another trust domain or zone. */
export async function claimDataDir(dataDir: string, wanted: DataDirIdentity): Promise<void> {
  const existing = await readDataDirIdentity(dataDir);
  if (existing !== undefined && (existing.trustDomain !== wanted.trustDomain || existing.zone !== wanted.zone)) {
    throw new InputError(
      CODE.CONTROL_DATA_DIR_MISMATCH,
      `${join(dataDir, IDENTITY_FILE)} belongs to trust domain "${existing.trustDomain}", zone "${existing.zone}"; this control plane was started for "${wanted.trustDomain}", zone "${wanted.zone}"`,
    );
  }
  await writeFileAtomic(join(dataDir, IDENTITY_FILE), `${JSON.stringify(wanted, null, 2)}\n`);
}
