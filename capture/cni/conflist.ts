/**
 * The node's CNI network configuration: which file the runtime uses (libcni takes the first of *.conf,
 * *.conflist and *.json in the directory, by name), and our entry in its `plugins` list, appended last
 * so it runs after the plugin that creates the interface (it is chained: it needs `prevResult`).
 * Insertion is idempotent (an existing trellis-cni entry is replaced in place of being duplicated) and
 * removal takes out our entries and nothing else. Files are replaced atomically (temp file, rename) with
 * a temp name the runtime never reads.
 */
import { readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PLUGIN_TYPE } from './protocol.js';

export const CONF_EXTENSIONS: readonly string[] = Object.freeze(['.conf', '.conflist', '.json']);
const MAX_CONF_BYTES = 1024 * 1024;

export class ConflistError extends Error {}

/** The file the runtime reads, or null when the directory holds none yet (the primary plugin is not installed). */
export async function primaryConfFile(confDir: string): Promise<string | null> {
  const names = (await readdir(confDir)).filter((n) => CONF_EXTENSIONS.some((e) => n.endsWith(e))).sort();
  return names[0] === undefined ? null : join(confDir, names[0]);
}

function parseConflist(text: string, path: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ConflistError(`${path} is not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConflistError(`${path} is not a JSON object`);
  const list = value as Record<string, unknown>;
  if (!Array.isArray(list.plugins)) {
    throw new ConflistError(`${path} is a single-plugin .conf (no "plugins" list); chaining needs a .conflist: configure the primary CNI plugin with a conflist`);
  }
  return list;
}

function isOurs(entry: unknown): boolean {
  return typeof entry === 'object' && entry !== null && (entry as { type?: unknown }).type === PLUGIN_TYPE;
}

export function withPlugin(list: Record<string, unknown>, entry: Record<string, unknown>): Record<string, unknown> {
  const others = (list.plugins as unknown[]).filter((p) => !isOurs(p));
  return { ...list, plugins: [...others, { ...entry, type: PLUGIN_TYPE }] };
}

export function withoutPlugin(list: Record<string, unknown>): Record<string, unknown> {
  return { ...list, plugins: (list.plugins as unknown[]).filter((p) => !isOurs(p)) };
}

export async function atomicWrite(path: string, text: string, mode: number): Promise<void> {
  const temp = `${path}.trellis-${process.pid}.tmp`;
  await writeFile(temp, text, { mode });
  await rename(temp, path);
}

async function readList(path: string): Promise<Record<string, unknown>> {
  const text = await readFile(path, 'utf8');
  if (text.length > MAX_CONF_BYTES) throw new ConflistError(`${path} is larger than ${MAX_CONF_BYTES} bytes`);
  return parseConflist(text, path);
}

/** Puts our entry into the primary conflist; returns the file and whether it changed. */
export async function insertIntoConflist(confDir: string, entry: Record<string, unknown>): Promise<{ file: string; changed: boolean }> {
  const file = await primaryConfFile(confDir);
  if (file === null) throw new ConflistError(`no CNI configuration in ${confDir} yet: the primary CNI plugin (e.g. kindnet, Calico, Cilium) writes it first; retrying`);
  const list = await readList(file);
  const next = withPlugin(list, entry);
  if (JSON.stringify(next) === JSON.stringify(list)) return { file, changed: false };
  await atomicWrite(file, `${JSON.stringify(next, null, 2)}\n`, 0o644);
  return { file, changed: true };
}

/** Takes our entries out of every configuration file in the directory (the primary may have changed). */
export async function removeFromConflists(confDir: string): Promise<string[]> {
  const changed: string[] = [];
  for (const name of (await readdir(confDir)).filter((n) => CONF_EXTENSIONS.some((e) => n.endsWith(e)))) {
    const file = join(confDir, name);
    let list: Record<string, unknown>;
    try {
      list = await readList(file);
    } catch {
      continue; // not a conflist of ours to edit
    }
    if (!(list.plugins as unknown[]).some(isOurs)) continue;
    await atomicWrite(file, `${JSON.stringify(withoutPlugin(list), null, 2)}\n`, 0o644);
    changed.push(file);
  }
  return changed;
}
