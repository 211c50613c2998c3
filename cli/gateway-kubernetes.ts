/**
 * `trellis gateway run --kubernetes --gateway NAMESPACE/NAME --config BASE`: the gateway's listeners and
 * routes come from the Gateway API (gateway/kubernetes/), the rest (mesh, admin, limits, JWT providers,
 * trusted hops) from the base file, which must leave out `listeners` and `routes`. The API is reached as
 * the control plane's Kubernetes mode reaches it: --kubeconfig, else in-cluster, else $KUBECONFIG.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { InputError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';
import type { Logger } from '../common/log.js';
import { readConfigFile } from '../common/yaml-source.js';
import { loadKubeConfig } from '../control/kubernetes/kube-config.js';
import { validateGatewayValue } from '../gateway/config-reader.js';
import { isObj, type Obj } from '../gateway/gateway-api.js';
import { startKubernetesGateway, type KubernetesGateway } from '../gateway/kubernetes/kubernetes-gateway.js';
import type { CommandContext } from './command.js';
import { kubeApiAccess } from './control.js';

export interface KubernetesRunFlags {
  readonly config: string;
  readonly gateway?: string | undefined;
  readonly kubeconfig?: string | undefined;
  readonly 'kube-context'?: string | undefined;
  readonly 'listen-address'?: string | undefined;
  readonly 'secret-dir'?: string | undefined;
}

/** The base file as a value, checked by the gateway's readers with a stand-in listener. */
export async function readBase(path: string): Promise<Obj> {
  const source = await readConfigFile(path);
  const doc = parseDocument(source.text);
  if (doc.errors.length > 0) throw new InputError(CODE.CONFIG_INVALID, `${path}: ${doc.errors.map((e) => e.message).join('; ')}`);
  const base: unknown = doc.toJS();
  if (!isObj(base)) throw new InputError(CODE.CONFIG_INVALID, `${path}: expected a mapping (the gateway config without listeners and routes)`);
  for (const key of ['listeners', 'routes']) {
    if (key in base) throw new InputError(CODE.CONFIG_INVALID, `${path}: "${key}" comes from the Gateway API in --kubernetes mode: leave it out of the file`);
  }
  validateGatewayValue({ ...base, listeners: [{ name: 'stand-in', port: 0, protocol: 'http' }], routes: [] }, path, dirname(resolve(path)), { emptyRoutes: true });
  return base;
}

export type KubernetesStarter = (log: Logger, signal: AbortSignal) => { gateway: KubernetesGateway; cleanup: () => void };

/** Checks the flags, the API access and the base file (every usage error before anything starts); returns the starter. */
export async function prepareKubernetes(flags: KubernetesRunFlags, ctx: CommandContext): Promise<KubernetesStarter> {
  const [namespace, name, extra] = (flags.gateway ?? '').split('/');
  if (namespace === undefined || namespace === '' || name === undefined || name === '' || extra !== undefined) throw new InputError(CODE.CLI_USAGE, '--kubernetes needs --gateway NAMESPACE/NAME (the Gateway to serve)');
  const problems: string[] = [];
  const access = kubeApiAccess({ mode: 'kubernetes', kubeconfig: flags.kubeconfig, 'kube-context': flags['kube-context'] }, ctx.env, problems);
  if (access === undefined) throw new InputError(CODE.CLI_USAGE, problems[0] ?? '--kubernetes: no Kubernetes API: not in a pod, and neither --kubeconfig nor $KUBECONFIG given');
  const kubeConfig = loadKubeConfig(access);
  const baseFile = resolve(flags.config);
  const base = await readBase(baseFile);
  return (log, signal) => {
    // Secrets become files here: given (an in-memory emptyDir in the Deployment), or a private temporary directory removed at exit.
    const own = flags['secret-dir'] === undefined ? mkdtempSync(join(tmpdir(), 'trellis-gateway-secrets-')) : undefined;
    const secretDir = resolve(flags['secret-dir'] ?? (own as string));
    const gateway = startKubernetesGateway({ kubeConfig, gateway: { namespace, name }, base, baseFile, secretDir, listenAddress: flags['listen-address'] ?? '0.0.0.0', log, signal });
    return { gateway, cleanup: () => (own === undefined ? undefined : rmSync(own, { recursive: true, force: true })) };
  };
}
