/**
 * One AdmissionReview in, one out: parse, decide, patch, count, and (outside dry runs) report skipped pods
 * as Events. Everything here is synchronous and bounded by the size of the pod, so the answer comes in
 * well under a millisecond for ordinary pods, far inside the webhook's timeout.
 *
 * Failure policy: a malformed review is the caller's fault (400 from the server). A bug while mutating a
 * well-formed pod fails the admission with a clear message rather than admitting the pod unmeshed: the
 * webhook is installed with `failurePolicy: Fail` for the same reason, so a pod in a meshed namespace is
 * never silently left outside the mesh.
 */
import type { Logger } from '../common/log.js';
import { describeError } from '../common/errors.js';
import { allowResponse, denyResponse, isPodCreate, parseAdmissionReview, podOf, type AdmissionReviewResponse } from './admission-review.js';
import type { InjectorConfig } from './config.js';
import type { EventSink } from './events.js';
import type { AdmissionResult, InjectorMetrics } from './metrics.js';
import { mutatePod } from './mutation.js';
import type { SelectionRoute } from './selection.js';

export interface AdmissionHandlerDeps {
  /** Read on every request: the CLI may swap it (e.g. after detecting the Kubernetes version). */
  readonly config: () => InjectorConfig;
  readonly metrics: InjectorMetrics;
  readonly events: EventSink;
  readonly logger: Logger;
}

export interface HandledReview {
  readonly review: AdmissionReviewResponse;
  readonly result: AdmissionResult;
}

export function handleAdmissionReview(body: unknown, route: SelectionRoute, deps: AdmissionHandlerDeps): HandledReview {
  const { request } = parseAdmissionReview(body);
  if (!isPodCreate(request)) return { review: allowResponse(request.uid), result: 'ignored' };
  const pod = podOf(request);
  // Pods made from generateName have no name yet; the request's namespace is authoritative, the
  // object's may be empty.
  const namespace = request.namespace ?? pod.metadata?.namespace ?? '';
  const podName = pod.metadata?.name ?? (pod.metadata?.generateName === undefined ? '' : `${pod.metadata.generateName}*`);
  const log = deps.logger.child({ uid: request.uid, namespace, pod: podName });
  if (namespace === '') return { review: denyResponse(request.uid, 'the pod has no namespace'), result: 'refused' };
  let outcome;
  try {
    outcome = mutatePod(pod, namespace, route, deps.config());
  } catch (err) {
    log.error({ err: describeError(err) }, 'injection failed');
    return { review: denyResponse(request.uid, `the Trellis injector failed to mutate this pod: ${describeError(err)}`), result: 'error' };
  }
  switch (outcome.outcome) {
    case 'injected':
      log.info({ layout: outcome.status.layout, probes: outcome.status.rewrittenProbes.length, dryRun: request.dryRun === true }, 'sidecar injected');
      return { review: allowResponse(request.uid, outcome.patch, outcome.warnings), result: 'injected' };
    case 'refused':
      log.info({ reason: outcome.message }, 'pod refused');
      return { review: denyResponse(request.uid, outcome.message), result: 'refused' };
    case 'unchanged': {
      const selection = outcome.selection;
      if (selection.action === 'already-injected') return { review: allowResponse(request.uid), result: 'unchanged' };
      deps.metrics.skipped.inc({ reason: selection.reason });
      log.info({ reason: selection.reason }, selection.message);
      if (selection.report && request.dryRun !== true) {
        deps.events.report({ namespace, pod, reason: 'TrellisInjectionSkipped', message: `Trellis sidecar not injected: ${selection.message}`, type: 'Warning' });
      }
      return { review: allowResponse(request.uid), result: 'skipped' };
    }
  }
}
