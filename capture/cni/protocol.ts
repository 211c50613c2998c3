/**
 * The CNI protocol as a chained plugin sees it (CNI spec 1.1, with 0.3.x and 0.4.0 accepted): the
 * runtime passes the operation and the container in `CNI_*` environment variables and the network
 * configuration (with the previous plugin's result as `prevResult`) as JSON on stdin; the plugin prints a
 * result, or an error object `{cniVersion, code, msg, details}` and exits non-zero. Parsing is strict
 * and says exactly what is wrong: an error here fails the pod's sandbox, and the kubelet shows `msg`.
 */

export const SUPPORTED_VERSIONS: readonly string[] = Object.freeze(['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
export const PLUGIN_TYPE = 'trellis-cni';

/** Well-known error codes (CNI spec, "Error"); 100 and up are the plugin's own. */
export const CNI_ERROR = Object.freeze({
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  CONTAINER_UNKNOWN: 3,
  INVALID_ENV: 4,
  IO_FAILURE: 5,
  DECODE_FAILURE: 6,
  INVALID_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  /** The pod is marked but its redirect annotation is invalid. */
  BAD_POD_REDIRECT: 100,
  /** iptables refused the rules or they could not be read. */
  REDIRECT_FAILED: 101,
  /** CHECK: the rules in the namespace are not the ones the pod needs. */
  REDIRECT_MISSING: 102,
});

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC';

export class CniError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly details = '',
  ) {
    super(message);
  }
}

export interface CniEnvironment {
  readonly command: CniCommand;
  readonly containerId: string;
  /** Path of the network namespace, e.g. /var/run/netns/cni-1234 or /proc/4321/ns/net; empty on some DELs. */
  readonly netns: string;
  readonly ifName: string;
  /** `K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_UID`, ... from CNI_ARGS. */
  readonly args: ReadonlyMap<string, string>;
}

/** What our entry in the conflist carries, besides the standard fields. */
export interface TrellisPluginConfig {
  readonly cniVersion: string;
  readonly name: string;
  readonly type: string;
  /** The previous plugin's result: passed through unchanged. */
  readonly prevResult?: Record<string, unknown>;
  /** Kubeconfig the plugin reads pods with (written by `trellis cni install`). */
  readonly kubeconfig?: string;
  /** Pods of these namespaces are never read or touched (kube-system, the mesh's own). */
  readonly excludeNamespaces: readonly string[];
  /** Where the plugin records the pods it set up (the node agent's repair reads it). */
  readonly stateDir?: string;
}

const COMMANDS: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'];
const MAX_ARGS = 64;

/** CNI_ARGS: `K1=V1;K2=V2`, each key once. */
export function parseCniArgs(text: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (text === undefined || text === '') return out;
  const parts = text.split(';').filter((p) => p !== '');
  if (parts.length > MAX_ARGS) throw new CniError(CNI_ERROR.INVALID_ENV, `CNI_ARGS has ${parts.length} entries, more than ${MAX_ARGS}`);
  for (const part of parts) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new CniError(CNI_ERROR.INVALID_ENV, `CNI_ARGS entry "${part}" is not KEY=VALUE`);
    out.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return out;
}

export function parseCniEnvironment(env: Readonly<Record<string, string | undefined>>): CniEnvironment {
  const command = env.CNI_COMMAND;
  if (command === undefined || !COMMANDS.includes(command as CniCommand)) {
    throw new CniError(CNI_ERROR.INVALID_ENV, `CNI_COMMAND is ${command === undefined ? 'not set' : `"${command}"`}; expected one of ${COMMANDS.join(', ')}`);
  }
  const c = command as CniCommand;
  const containerId = env.CNI_CONTAINERID ?? '';
  const netns = env.CNI_NETNS ?? '';
  const ifName = env.CNI_IFNAME ?? '';
  if (c === 'ADD' || c === 'CHECK' || c === 'DEL') {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(containerId)) throw new CniError(CNI_ERROR.INVALID_ENV, `CNI_CONTAINERID "${containerId}" must be alphanumeric with _ . -`);
    if (ifName === '') throw new CniError(CNI_ERROR.INVALID_ENV, 'CNI_IFNAME is not set');
    if (c !== 'DEL' && !netns.startsWith('/')) throw new CniError(CNI_ERROR.INVALID_ENV, `CNI_NETNS "${netns}" must be an absolute path to a network namespace`);
  }
  return Object.freeze({ command: c, containerId, netns, ifName, args: parseCniArgs(env.CNI_ARGS) });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parsePluginConfig(stdin: string): TrellisPluginConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(CNI_ERROR.DECODE_FAILURE, `the network configuration on stdin is not JSON: ${(err as Error).message}`);
  }
  if (!isObject(raw)) throw new CniError(CNI_ERROR.DECODE_FAILURE, 'the network configuration on stdin is not a JSON object');
  const version = raw.cniVersion;
  if (typeof version !== 'string' || !SUPPORTED_VERSIONS.includes(version)) {
    throw new CniError(CNI_ERROR.INCOMPATIBLE_VERSION, `cniVersion ${JSON.stringify(version)} is not supported (supported: ${SUPPORTED_VERSIONS.join(', ')})`);
  }
  if (typeof raw.name !== 'string' || raw.name === '') throw new CniError(CNI_ERROR.INVALID_CONFIG, 'the network configuration has no "name"');
  if (typeof raw.type !== 'string') throw new CniError(CNI_ERROR.INVALID_CONFIG, 'the network configuration has no "type"');
  if (raw.prevResult !== undefined && !isObject(raw.prevResult)) throw new CniError(CNI_ERROR.INVALID_CONFIG, '"prevResult" must be an object');
  if (raw.kubeconfig !== undefined && (typeof raw.kubeconfig !== 'string' || !raw.kubeconfig.startsWith('/'))) throw new CniError(CNI_ERROR.INVALID_CONFIG, '"kubeconfig" must be an absolute path');
  if (raw.state_dir !== undefined && (typeof raw.state_dir !== 'string' || !raw.state_dir.startsWith('/'))) throw new CniError(CNI_ERROR.INVALID_CONFIG, '"state_dir" must be an absolute path');
  const excluded = raw.exclude_namespaces ?? [];
  if (!Array.isArray(excluded) || excluded.some((n) => typeof n !== 'string')) throw new CniError(CNI_ERROR.INVALID_CONFIG, '"exclude_namespaces" must be a list of namespace names');
  return Object.freeze({
    cniVersion: version,
    name: raw.name,
    type: raw.type,
    ...(raw.prevResult === undefined ? {} : { prevResult: raw.prevResult }),
    ...(raw.kubeconfig === undefined ? {} : { kubeconfig: raw.kubeconfig as string }),
    ...(raw.state_dir === undefined ? {} : { stateDir: raw.state_dir as string }),
    excludeNamespaces: Object.freeze([...(excluded as string[])]),
  });
}

/** The result a chained plugin prints: the previous result, in the configuration's version. */
export function passThroughResult(config: TrellisPluginConfig): Record<string, unknown> {
  return { ...(config.prevResult ?? {}), cniVersion: config.cniVersion };
}

export function versionResult(requested: string | undefined): Record<string, unknown> {
  return { cniVersion: requested !== undefined && SUPPORTED_VERSIONS.includes(requested) ? requested : '1.1.0', supportedVersions: [...SUPPORTED_VERSIONS] };
}

export function errorResult(cniVersion: string, err: CniError): Record<string, unknown> {
  return { cniVersion, code: err.code, msg: err.message, ...(err.details === '' ? {} : { details: err.details }) };
}
