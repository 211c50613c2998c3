/**
 * The Kubernetes mode of a zone control plane, assembled: workloads authenticate with their projected
 * service-account tokens (TokenReview), the registry follows Services, EndpointSlices and Pods, and
 * policy comes from TrafficPermission resources. The rest of the control plane (CA, issuance, watch
 * hub, admin) is the same as in universal mode; this only swaps where identities, endpoints and policy
 * come from.
 *
 * `start` loads policy before the registry: agents must never be served an empty policy by accident,
 * and an invalid policy set stops the start with every problem listed before anything else is done.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import type { Logger } from '../../common/log.js';
import type { PolicyState } from '../policy-source.js';
import { KubernetesMetrics } from './kubernetes-metrics.js';
import { KubernetesPolicyFeed } from './policy-feed.js';
import { KubernetesRegistryFeed, type RegistryTarget, type ReflectorTuning } from './registry-feed.js';
import { TokenReviewAuthenticator } from './token-review-authenticator.js';

export interface KubernetesModeOptions {
  readonly kubeConfig: KubeConfig;
  readonly zone: string;
  readonly rootNamespace: string;
  readonly log: Logger;
  readonly metrics: Registry;
  readonly registry: RegistryTarget;
  readonly onPolicyChange: (state: PolicyState) => void;
  readonly onPolicyError: (state: PolicyState) => void;
  /** How long start-up waits for the first complete lists; default 60 s. */
  readonly syncTimeoutMs?: number;
  readonly tuning?: ReflectorTuning;
}

export interface KubernetesMode {
  readonly authenticator: TokenReviewAuthenticator;
  readonly policy: KubernetesPolicyFeed;
  readonly registryFeed: KubernetesRegistryFeed;
  start(): Promise<void>;
  close(): Promise<void>;
}

export function createKubernetesMode(options: KubernetesModeOptions): KubernetesMode {
  const metrics = new KubernetesMetrics(options.metrics);
  const log = options.log.child({ mode: 'kubernetes' });
  const tuning = options.tuning === undefined ? {} : { tuning: options.tuning };
  const authenticator = new TokenReviewAuthenticator({ kubeConfig: options.kubeConfig, log, metrics });
  const policy = new KubernetesPolicyFeed({
    kubeConfig: options.kubeConfig,
    rootNamespace: options.rootNamespace,
    log,
    metrics,
    ...tuning,
    onChange: options.onPolicyChange,
    onError: options.onPolicyError,
  });
  const registryFeed = new KubernetesRegistryFeed({ kubeConfig: options.kubeConfig, registry: options.registry, zone: options.zone, log, metrics, ...tuning });
  return {
    authenticator,
    policy,
    registryFeed,
    async start() {
      try {
        await policy.start(options.syncTimeoutMs);
        await registryFeed.start(options.syncTimeoutMs);
      } catch (err) {
        await Promise.all([policy.close(), registryFeed.close()]);
        throw err;
      }
    },
    async close() {
      await Promise.all([policy.close(), registryFeed.close()]);
    },
  };
}
