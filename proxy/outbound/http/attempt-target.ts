/**
 * One attempt of an HTTP request carried on a tunnel stream (the HTTP/2-request path of `exchange.ts` and
 * the app-facing HTTP/2 path of `../http2/stream-exchange.ts`): the next endpoint is picked, skipping those
 * already tried, and the request's `trellis-target` names that endpoint's own app port.
 */
import type { OutgoingHttpHeaders } from 'node:http2';
import { formatAuthority } from '../../core/destination.js';
import { TARGET_HEADER } from '../../core/tunnel-protocol.js';
import { HTTP_FAILURES, type HttpFailureKind } from '../../http/errors.js';
import type { BalancedEndpoint, LoadBalancer } from '../tunnel-client/load-balancer.js';
import type { PoolTarget } from '../tunnel-client/session-pool.js';
import { routeTargetPort, type OutboundRoute } from '../route.js';

export interface AttemptState {
  readonly deps: { readonly balancer: Pick<LoadBalancer, 'pick' | 'begin'> };
  readonly route: OutboundRoute;
  readonly headers: OutgoingHttpHeaders;
  /** Endpoint keys already tried (undefined: none yet). */
  tried: Set<string> | undefined;
  attempts: number;
  endpoint: BalancedEndpoint | undefined;
  /** The last endpoint tried answered that its app refused: when none is left, the caller gets that. */
  appRefused: boolean;
}

/**
 * Picks the next endpoint and counts the attempt; undefined when none is left (`noEndpointFailure` says why).
 * `accepts` is traffic management's filter (a route backend's labels, outlier ejections); `again` lets a
 * retry of an answered request go back to an endpoint already tried when no other is left (Envoy does too).
 */
export function nextAttemptTarget(x: AttemptState, accepts?: (e: BalancedEndpoint) => boolean, again = false): PoolTarget | undefined {
  const { balancer } = x.deps;
  let endpoint = balancer.pick(x.route.service, x.route.namespace, x.tried, x.route.servicePort, accepts);
  if (endpoint === undefined && again) endpoint = balancer.pick(x.route.service, x.route.namespace, undefined, x.route.servicePort, accepts);
  if (endpoint === undefined) return undefined;
  x.attempts += 1;
  x.endpoint = endpoint;
  x.deps.balancer.begin(endpoint);
  // Each endpoint at its own app port (instances of one service may listen on different ones); node copies
  // the headers when the request is made, so rewriting the target between attempts is safe.
  const port = routeTargetPort(x.route, endpoint.endpoint);
  x.headers[TARGET_HEADER] = formatAuthority({ service: x.route.service, namespace: x.route.namespace, port });
  return { endpoint: endpoint.endpoint, service: x.route.service, namespace: x.route.namespace, port };
}

/** What the caller gets when no endpoint is left to try. */
export function noEndpointFailure(x: AttemptState): HttpFailureKind {
  return x.appRefused ? HTTP_FAILURES.appUnavailable : x.tried === undefined ? HTTP_FAILURES.noEndpoint : HTTP_FAILURES.upstreamConnect;
}
