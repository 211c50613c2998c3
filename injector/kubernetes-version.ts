/**
 * Which Kubernetes version the cluster runs, read once at start from the API server's `/version`
 * (`--kubernetes-version auto`, the default) or given by the operator. It decides between native sidecars
 * (1.29+) and the classic layout. Read at start only: a control-plane upgrade is followed by new injector
 * pods in practice, and a wrong guess for a few minutes still yields working pods (classic works everywhere).
 */
import type { VersionApi } from '@kubernetes/client-node';
import { describeError, TrellisError } from '../common/errors.js';
import { parseKubernetesVersion, type KubernetesVersion } from './config.js';
import { CODE } from '../common/error-codes.js';

export async function detectKubernetesVersion(api: Pick<VersionApi, 'getCode'>): Promise<KubernetesVersion> {
  let info;
  try {
    info = await api.getCode();
  } catch (err) {
    throw new TrellisError(CODE.INJECTOR_VERSION_UNKNOWN, `cannot read the API server's version (pass --kubernetes-version to skip detection): ${describeError(err)}`, {
      side: 'upstream',
      retryable: true,
      cause: err,
    });
  }
  // Managed clusters report minor as "29+"; gitVersion ("v1.29.4-eks-...") is the fallback.
  if (/^\d+$/.test(info.major ?? '') && /^\d+\+?$/.test(info.minor ?? '')) return parseKubernetesVersion(info.major, info.minor.replace('+', ''));
  return parseKubernetesVersion(info.gitVersion);
}
