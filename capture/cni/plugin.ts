/**
 * The chained CNI plugin's behaviour, one function per CNI command, with its dependencies passed in (the
 * pod lookup, the runner that enters a network namespace, the state records), so tests drive it as a
 * runtime would and the CLI only wires it.
 *
 * How the plugin learns that a pod is meshed: the runtime passes `K8S_POD_NAMESPACE` and `K8S_POD_NAME`
 * in CNI_ARGS; the plugin reads that pod from the API (one GET, with the node agent's kubeconfig) and acts
 * only when the injector marked it: annotation `trellis.dev/capture: cni` and the redirect in
 * `trellis.dev/redirect`, validated like the flags of `trellis agent redirect install`. Anything else
 * (no Kubernetes args, excluded namespace, unmarked pod) passes `prevResult` through untouched, so the
 * plugin is harmless for every pod that is not meshed.
 *
 * ADD installs the same rules as `trellis agent redirect install` inside CNI_NETNS (atomic per family,
 * idempotent), then records the pod in the state directory for the node agent's repair. DEL removes the
 * rules if the namespace still exists and the record, and never fails for what is already gone (the spec
 * asks DEL to be idempotent). CHECK compares the installed rules with the pod's. VERSION answers the
 * versions this plugin speaks.
 */
import { mkdir, rm, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { ANNOTATION_CAPTURE, ANNOTATION_REDIRECT } from '../../common/mesh-annotations.js';
import type { CommandRunner } from '../command-runner.js';
import { createRedirectInstaller } from '../installer.js';
import { sameRuleSet } from '../nat-state.js';
import { validateRedirectOptions, type RedirectConfig, type RedirectOptionsInput } from '../options.js';
import { buildNatRules } from '../rules.js';
import { CNI_ERROR, CniError, passThroughResult, versionResult, type CniEnvironment, type TrellisPluginConfig } from './protocol.js';

export interface PodMarks {
  readonly uid: string;
  readonly annotations: Readonly<Record<string, string>>;
}

export interface PodLookup {
  /** The pod's uid and annotations; null when the pod does not exist (deleted meanwhile). */
  get(namespace: string, name: string): Promise<PodMarks | null>;
}

export interface PluginDeps {
  /** Pod lookup for this config (its kubeconfig); undefined when the config names none. */
  readonly pods: (config: TrellisPluginConfig) => PodLookup | undefined;
  readonly runnerFor: (netnsPath: string) => CommandRunner;
  /** Whether the network namespace path still exists (DEL after the sandbox is gone). */
  readonly netnsExists: (netnsPath: string) => boolean;
}

/** Written per pod the plugin set up: `<state_dir>/<pod uid>.json`. */
export interface PodRecord {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly containerId: string;
  readonly netns: string;
}

export const DEFAULT_STATE_DIR = '/var/run/trellis-cni';
const MAX_REDIRECT_ANNOTATION = 16 * 1024;

interface Target {
  readonly namespace: string;
  readonly name: string;
}

function kubernetesTarget(env: CniEnvironment, config: TrellisPluginConfig): Target | null {
  const namespace = env.args.get('K8S_POD_NAMESPACE');
  const name = env.args.get('K8S_POD_NAME');
  if (namespace === undefined || name === undefined || namespace === '' || name === '') return null;
  if (config.excludeNamespaces.includes(namespace)) return null;
  return { namespace, name };
}

/** The redirect the pod asks for, or null when the injector did not mark it for CNI capture. */
export function podRedirect(marks: PodMarks, where: string): RedirectConfig | null {
  if (marks.annotations[ANNOTATION_CAPTURE] !== 'cni') return null;
  const text = marks.annotations[ANNOTATION_REDIRECT];
  if (text === undefined) throw new CniError(CNI_ERROR.BAD_POD_REDIRECT, `${where} has ${ANNOTATION_CAPTURE}: cni but no ${ANNOTATION_REDIRECT} annotation; re-create it through the Trellis injector`);
  if (text.length > MAX_REDIRECT_ANNOTATION) throw new CniError(CNI_ERROR.BAD_POD_REDIRECT, `${where}: ${ANNOTATION_REDIRECT} is longer than ${MAX_REDIRECT_ANNOTATION} characters`);
  let input: unknown;
  try {
    input = JSON.parse(text);
  } catch {
    throw new CniError(CNI_ERROR.BAD_POD_REDIRECT, `${where}: ${ANNOTATION_REDIRECT} is not JSON`);
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new CniError(CNI_ERROR.BAD_POD_REDIRECT, `${where}: ${ANNOTATION_REDIRECT} is not a JSON object`);
  const fields = input as RedirectOptionsInput;
  // Inside a pod only: the VM platform would add SSH rules a pod never wants.
  if (fields.platform !== 'pod') throw new CniError(CNI_ERROR.BAD_POD_REDIRECT, `${where}: ${ANNOTATION_REDIRECT} must have "platform": "pod"`);
  try {
    return validateRedirectOptions(fields);
  } catch (err) {
    throw new CniError(CNI_ERROR.BAD_POD_REDIRECT, `${where}: ${ANNOTATION_REDIRECT} is invalid: ${(err as Error).message}`);
  }
}

async function lookUp(env: CniEnvironment, config: TrellisPluginConfig, deps: PluginDeps): Promise<{ target: Target; marks: PodMarks; redirect: RedirectConfig } | null> {
  const target = kubernetesTarget(env, config);
  if (target === null) return null;
  const pods = deps.pods(config);
  if (pods === undefined) throw new CniError(CNI_ERROR.INVALID_CONFIG, 'the trellis-cni configuration has no "kubeconfig": run `trellis cni install`, which writes it');
  let marks: PodMarks | null;
  try {
    marks = await pods.get(target.namespace, target.name);
  } catch (err) {
    // The kubelet retries a failed sandbox: better late than a meshed pod without its rules.
    throw new CniError(CNI_ERROR.TRY_AGAIN_LATER, `cannot read pod ${target.namespace}/${target.name} to see whether it is meshed: ${(err as Error).message}`);
  }
  if (marks === null) return null;
  const redirect = podRedirect(marks, `pod ${target.namespace}/${target.name}`);
  return redirect === null ? null : { target, marks, redirect };
}

async function writeRecord(stateDir: string, record: PodRecord): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const path = join(stateDir, `${record.uid}.json`);
  const temp = `${path}.${process.pid}.tmp`;
  await writeFile(temp, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  await rename(temp, path);
}

function safeUid(uid: string): boolean {
  return /^[A-Za-z0-9-]{1,64}$/.test(uid);
}

async function add(env: CniEnvironment, config: TrellisPluginConfig, deps: PluginDeps): Promise<Record<string, unknown>> {
  if (config.prevResult === undefined) throw new CniError(CNI_ERROR.INVALID_CONFIG, 'trellis-cni is a chained plugin: it must follow the plugin that sets up the interface in the conflist (no prevResult)');
  const found = await lookUp(env, config, deps);
  if (found === null) return passThroughResult(config);
  if (!safeUid(found.marks.uid)) throw new CniError(CNI_ERROR.INVALID_CONFIG, `pod uid "${found.marks.uid}" is not a Kubernetes uid`);
  const installer = createRedirectInstaller({ runner: deps.runnerFor(env.netns) });
  try {
    await installer.install(found.redirect);
  } catch (err) {
    throw new CniError(CNI_ERROR.REDIRECT_FAILED, `cannot install the Trellis redirect for pod ${found.target.namespace}/${found.target.name}: ${(err as Error).message}`);
  }
  try {
    await writeRecord(config.stateDir ?? DEFAULT_STATE_DIR, { uid: found.marks.uid, namespace: found.target.namespace, name: found.target.name, containerId: env.containerId, netns: env.netns });
  } catch (err) {
    throw new CniError(CNI_ERROR.IO_FAILURE, `installed the redirect but cannot record pod ${found.target.namespace}/${found.target.name}: ${(err as Error).message}`);
  }
  return passThroughResult(config);
}

async function del(env: CniEnvironment, config: TrellisPluginConfig, deps: PluginDeps): Promise<void> {
  // DEL must succeed when things are already gone: the namespace, the pod, our record.
  if (env.netns !== '' && deps.netnsExists(env.netns) && kubernetesTarget(env, config) !== null) {
    try {
      await createRedirectInstaller({ runner: deps.runnerFor(env.netns) }).uninstall();
    } catch (err) {
      throw new CniError(CNI_ERROR.REDIRECT_FAILED, `cannot remove the Trellis redirect from ${env.netns}: ${(err as Error).message}`);
    }
  }
  const uid = env.args.get('K8S_POD_UID');
  if (uid !== undefined && safeUid(uid)) await rm(join(config.stateDir ?? DEFAULT_STATE_DIR, `${uid}.json`), { force: true });
}

async function check(env: CniEnvironment, config: TrellisPluginConfig, deps: PluginDeps): Promise<void> {
  if (config.prevResult === undefined) throw new CniError(CNI_ERROR.INVALID_CONFIG, 'CHECK needs prevResult');
  const found = await lookUp(env, config, deps);
  if (found === null) return;
  const status = await createRedirectInstaller({ runner: deps.runnerFor(env.netns) }).status();
  for (const family of found.redirect.ipv6 ? ([4, 6] as const) : ([4] as const)) {
    const state = status.families.find((f) => f.family === family)?.state;
    if (state === undefined || !state.installed || !sameRuleSet(state, buildNatRules(found.redirect, family))) {
      throw new CniError(CNI_ERROR.REDIRECT_MISSING, `pod ${found.target.namespace}/${found.target.name}: the IPv${family} redirect in ${env.netns} is ${state?.installed === true ? 'not the one the pod needs' : 'missing'}`);
    }
  }
}

/** Runs one CNI command; resolves with what to print (nothing for DEL and CHECK), throws CniError. */
export async function runPlugin(env: CniEnvironment, config: TrellisPluginConfig | undefined, deps: PluginDeps): Promise<Record<string, unknown> | undefined> {
  if (env.command === 'VERSION') return versionResult(config?.cniVersion);
  if (config === undefined) throw new CniError(CNI_ERROR.DECODE_FAILURE, 'no network configuration on stdin');
  switch (env.command) {
    case 'ADD':
      return add(env, config, deps);
    case 'DEL':
      await del(env, config, deps);
      return undefined;
    case 'CHECK':
      await check(env, config, deps);
      return undefined;
    case 'STATUS':
    case 'GC':
      // Nothing to report or collect: the plugin holds no IP addresses, and DEL removes its records.
      return undefined;
  }
}
