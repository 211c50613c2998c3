/**
 * Access to the Kubernetes API: in-cluster (the pod's service-account token and CA, re-read as the
 * kubelet rotates them) or a kubeconfig file given with `--kubeconfig`. The CLI reads the environment
 * (KUBERNETES_SERVICE_HOST/PORT) and passes the values here; nothing below `cli/` reads process.env.
 */
import { existsSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { InputError, describeError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';

export const IN_CLUSTER_CREDENTIALS = Object.freeze({
  token: '/var/run/secrets/kubernetes.io/serviceaccount/token',
  ca: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
});

export type KubeApiAccess =
  /** `origin` names where the path came from in error messages (default "--kubeconfig"). */
  | { readonly kind: 'kubeconfig'; readonly path: string; readonly context?: string; readonly origin?: string }
  | { readonly kind: 'in-cluster'; readonly host: string; readonly port: string };

export function loadKubeConfig(access: KubeApiAccess): KubeConfig {
  const kc = new KubeConfig();
  if (access.kind === 'kubeconfig') {
    const where = `${access.origin ?? '--kubeconfig'} ${access.path}`;
    try {
      kc.loadFromFile(access.path);
    } catch (err) {
      throw new InputError(CODE.K8S_KUBECONFIG_INVALID, `${where}: ${describeError(err)}`);
    }
    if (access.context !== undefined) {
      if (!kc.getContexts().some((c) => c.name === access.context)) {
        throw new InputError(CODE.K8S_KUBECONFIG_INVALID, `${where}: no context "${access.context}" (it has ${kc.getContexts().map((c) => `"${c.name}"`).join(', ') || 'none'})`);
      }
      kc.setCurrentContext(access.context);
    }
    if (kc.getCurrentCluster() === null) throw new InputError(CODE.K8S_KUBECONFIG_INVALID, `${where}: no current context with a cluster`);
    return kc;
  }
  if (!existsSync(IN_CLUSTER_CREDENTIALS.token)) {
    throw new InputError(CODE.K8S_NO_CREDENTIALS, `no service-account token at ${IN_CLUSTER_CREDENTIALS.token}: run in a pod with a service account, or pass --kubeconfig`);
  }
  const host = isIPv6(access.host) ? `[${access.host}]` : access.host;
  // The same shape as KubeConfig.loadFromCluster, without its read of process.env: the tokenFile
  // provider re-reads the projected token, which the kubelet rotates well before it expires.
  kc.loadFromClusterAndUser(
    { name: 'in-cluster', server: `https://${host}:${access.port}`, caFile: IN_CLUSTER_CREDENTIALS.ca, skipTLSVerify: false },
    { name: 'in-cluster', authProvider: { name: 'tokenFile', config: { tokenFile: IN_CLUSTER_CREDENTIALS.token } } },
  );
  return kc;
}
