/**
 * `trellis cni install` on a node: the plugin executable in the CNI bin directory (a small shell shim that
 * runs the Trellis CLI with a Node runtime on the host), the plugin's kubeconfig (mode 0600: a token that
 * may only get pods), and our entry at the end of the primary conflist. Every step is idempotent, so the
 * node agent runs it again periodically: a primary plugin that rewrites its conflist (Calico and Cilium
 * do on restart) gets our entry back. `uninstall` undoes each step and nothing else.
 */
import { cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { atomicWrite, insertIntoConflist, removeFromConflists } from './conflist.js';
import { PLUGIN_TYPE } from './protocol.js';

export const PLUGIN_FILE = PLUGIN_TYPE;
export const KUBECONFIG_FILE = 'trellis-cni.kubeconfig';

export interface CniPaths {
  /** Where this process writes (inside the node agent: the host's dirs mounted at /host/...). */
  readonly binDir: string;
  readonly confDir: string;
  /** The same directories as the host (and the runtime) sees them: written into the shim and the entry. */
  readonly hostConfDir: string;
  readonly hostStateDir: string;
}

export interface CniRuntime {
  /** Node binary and the CLI's main.js as the host sees them. */
  readonly node: string;
  readonly main: string;
}

export interface InstallInput {
  readonly paths: CniPaths;
  readonly runtime: CniRuntime;
  readonly kubeconfig: string;
  readonly excludeNamespaces: readonly string[];
}

export interface InstallReport {
  readonly conflist: string;
  readonly changed: readonly string[];
}

function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

export function shimScript(runtime: CniRuntime): string {
  return [
    '#!/bin/sh',
    '# Trellis CNI plugin (written by `trellis cni install`; removed by `trellis cni uninstall`).',
    '# The container runtime executes this with CNI_* in the environment and the network configuration on stdin.',
    `exec ${shellQuote(runtime.node)} ${shellQuote(runtime.main)} cni plugin`,
    '',
  ].join('\n');
}

export function pluginEntry(input: InstallInput): Record<string, unknown> {
  return {
    type: PLUGIN_TYPE,
    kubeconfig: join(input.paths.hostConfDir, KUBECONFIG_FILE),
    state_dir: input.paths.hostStateDir,
    exclude_namespaces: [...input.excludeNamespaces],
  };
}

async function writeIfDifferent(path: string, text: string, mode: number): Promise<boolean> {
  const current = await readFile(path, 'utf8').catch(() => undefined);
  if (current === text) {
    const s = await stat(path);
    if ((s.mode & 0o777) === mode) return false;
  }
  await atomicWrite(path, text, mode);
  return true;
}

export async function installCni(input: InstallInput): Promise<InstallReport> {
  const changed: string[] = [];
  const shim = join(input.paths.binDir, PLUGIN_FILE);
  if (await writeIfDifferent(shim, shimScript(input.runtime), 0o755)) changed.push(shim);
  const kubeconfig = join(input.paths.confDir, KUBECONFIG_FILE);
  if (await writeIfDifferent(kubeconfig, input.kubeconfig, 0o600)) changed.push(kubeconfig);
  // The entry last: the runtime may call the plugin the moment it is listed.
  const { file, changed: listChanged } = await insertIntoConflist(input.paths.confDir, pluginEntry(input));
  if (listChanged) changed.push(file);
  return { conflist: file, changed };
}

export async function uninstallCni(paths: Pick<CniPaths, 'binDir' | 'confDir'>): Promise<string[]> {
  // The entry first: no new pod may call a plugin that is about to disappear.
  const changed = await removeFromConflists(paths.confDir);
  for (const file of [join(paths.binDir, PLUGIN_FILE), join(paths.confDir, KUBECONFIG_FILE)]) {
    const existed = await stat(file).then(
      () => true,
      () => false,
    );
    await rm(file, { force: true });
    if (existed) changed.push(file);
  }
  return changed;
}

/**
 * Copies the Node runtime and the Trellis app (dist, node_modules, the native addon) to `dir` on the
 * host, once per version: the shim runs them there, outside any container.
 */
export async function copyRuntime(appRoot: string, nodeBinary: string, dir: string, version: string): Promise<boolean> {
  const marker = join(dir, 'VERSION');
  const want = `${version} ${process.version}\n`;
  if ((await readFile(marker, 'utf8').catch(() => '')) === want) return false;
  await mkdir(join(dir, 'app'), { recursive: true });
  await cp(nodeBinary, join(dir, 'node'), { force: true });
  for (const part of ['package.json', 'dist', 'node_modules', 'build']) {
    const from = join(appRoot, part);
    if (await stat(from).then(() => true, () => false)) await cp(from, join(dir, 'app', part), { recursive: true, force: true });
  }
  await writeFile(marker, want);
  return true;
}
