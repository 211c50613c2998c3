/**
 * How every Trellis component talks to the Kubernetes API: API clients that send a `User-Agent` naming
 * Trellis, its version and the component (`trellis-injector/0.1.0 (trellis.dev)`), and the field manager
 * each write carries (`trellis-injector`), so managedFields and audit logs say who changed what instead
 * of "node-fetch".
 */
import { createConfiguration, ServerConfiguration, type Configuration, type KubeConfig, type Middleware, type RequestContext, type ResponseContext } from '@kubernetes/client-node';

import { TRELLIS_VERSION } from './version.js';

export type TrellisComponent = 'injector' | 'control' | 'cni' | 'check' | 'gateway';

/** The field manager of every write a component makes (server-side apply and managedFields). */
export function fieldManager(component: TrellisComponent): `trellis-${TrellisComponent}` {
  return `trellis-${component}`;
}

export function userAgent(component: TrellisComponent): string {
  return `trellis-${component}/${TRELLIS_VERSION} (trellis.dev; node ${process.versions.node})`;
}

function userAgentMiddleware(component: TrellisComponent): Middleware {
  const value = userAgent(component);
  return {
    pre: (request: RequestContext) => {
      request.setHeaderParam('User-Agent', value);
      return Promise.resolve(request);
    },
    post: (response: ResponseContext) => Promise.resolve(response),
  };
}

/** `kc.makeApiClient(Api)` with the Trellis User-Agent on every request. */
export function makeTrellisApiClient<T>(kc: KubeConfig, api: new (config: Configuration) => T, component: TrellisComponent): T {
  const cluster = kc.getCurrentCluster();
  if (cluster === null) throw new Error('the kubeconfig has no current cluster');
  const config = createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    authMethods: { default: kc },
    promiseMiddleware: [userAgentMiddleware(component)],
  });
  return new api(config);
}
