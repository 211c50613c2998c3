/**
 * One AdmissionReview in, one out: parse, decide, patch, count, and (outside dry runs) report skipped pods
 * as Events. Everything here is synchronous and bounded by the size of the pod, so the answer comes in
 * well under a millisecond for ordinary pods, far inside the webhook's timeout.
 *
 * Pod Security: the pod's namespace is read (cached) for its enforce level and capture mode, and the pod
 * as it would be after injection is checked against that level. When injecting would add a violation (the
 * init container's NET_ADMIN under `baseline`, its root user under `restricted`), the pod is refused with
 * the fix (CNI capture, or the namespace's label) rather than injected and then rejected by the API server
 * with no word about the mesh. The app's own violations are left to the API server to report.
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
import { injectedPod, mutatePod } from './mutation.js';
import { selectPod, type SelectionRoute } from './selection.js';
import type { NamespaceDirectory, NamespaceFacts } from './namespace-facts.js';
import { formatViolations, violationsAddedBy } from './pod-security.js';
import { LABEL_CAPTURE_MODE, type CaptureMode } from '../common/mesh-annotations.js';
import { KEY_INJECT } from './annotations.js';
import type { V1Pod } from '@kubernetes/client-node';

export interface AdmissionHandlerDeps {
  /** Read on every request: the CLI may swap it (e.g. after detecting the Kubernetes version). */
  readonly config: () => InjectorConfig;
  readonly metrics: InjectorMetrics;
  readonly events: EventSink;
  readonly logger: Logger;
  readonly namespaces: NamespaceDirectory;
}

export interface HandledReview {
  readonly review: AdmissionReviewResponse;
  readonly result: AdmissionResult;
}

/** The refusal's text: what Pod Security would say, and how to make the namespace admit meshed pods. */
export function podSecurityRefusal(namespace: string, facts: NamespaceFacts, mode: CaptureMode, violations: string): string {
  const fix =
    mode === 'init'
      ? `Fix: label the namespace ${LABEL_CAPTURE_MODE}=cni (kubectl label namespace ${namespace} ${LABEL_CAPTURE_MODE}=cni; needs the Trellis CNI node agent, deploy/kubernetes/overlays/zone) or run the injector with --capture-mode cni, so the pod needs no privileged init container; or relax the namespace's pod-security.kubernetes.io/enforce label (now "${facts.podSecurity}"); or opt the pod out with ${KEY_INJECT}: "false".`
      : `Fix: check the injector's --proxy-uid/--proxy-gid and resources, or relax the namespace's pod-security.kubernetes.io/enforce label (now "${facts.podSecurity}"); or opt the pod out with ${KEY_INJECT}: "false".`;
  return `the Trellis sidecar (capture mode "${mode}") would make this pod fail the Pod Security level enforced on namespace "${namespace}": the pod ${violations}. ${fix}`;
}

export async function handleAdmissionReview(body: unknown, route: SelectionRoute, deps: AdmissionHandlerDeps): Promise<HandledReview> {
  const { request } = parseAdmissionReview(body);
  if (!isPodCreate(request)) return { review: allowResponse(request.uid), result: 'ignored' };
  const pod = podOf(request);
  // Pods made from generateName have no name yet; the request's namespace is authoritative, the
  // object's may be empty.
  const namespace = request.namespace ?? pod.metadata?.namespace ?? '';
  const podName = pod.metadata?.name ?? (pod.metadata?.generateName === undefined ? '' : `${pod.metadata.generateName}*`);
  const log = deps.logger.child({ uid: request.uid, namespace, pod: podName });
  if (namespace === '') return { review: denyResponse(request.uid, 'the pod has no namespace'), result: 'refused' };
  const config = deps.config();
  let facts: NamespaceFacts | undefined;
  if (selectPod(pod, namespace, route, config).action === 'inject') {
    try {
      facts = await deps.namespaces.facts(namespace);
    } catch (err) {
      log.warn({ err: describeError(err) }, 'namespace unreadable; pod refused (the controller retries)');
      return { review: denyResponse(request.uid, `the Trellis injector cannot decide how to inject this pod: ${describeError(err)}`), result: 'error' };
    }
    if (facts.badCaptureMode !== undefined) {
      return { review: denyResponse(request.uid, `namespace "${namespace}" has ${LABEL_CAPTURE_MODE}="${facts.badCaptureMode}"; use "init" or "cni"`), result: 'refused' };
    }
  }
  const mode = facts?.captureMode ?? config.captureMode;
  let outcome;
  try {
    outcome = mutatePod(pod, namespace, route, config, mode);
  } catch (err) {
    log.error({ err: describeError(err) }, 'injection failed');
    return { review: denyResponse(request.uid, `the Trellis injector failed to mutate this pod: ${describeError(err)}`), result: 'error' };
  }
  switch (outcome.outcome) {
    case 'injected': {
      const refusal = facts === undefined ? undefined : podSecurityCheck(pod, injectedPod(pod, outcome.parts), namespace, facts, mode);
      if (refusal !== undefined) {
        deps.metrics.podSecurityRefusals.inc({ level: facts?.podSecurity ?? 'unknown', capture_mode: mode });
        log.info({ reason: refusal, level: facts?.podSecurity, captureMode: mode }, 'pod refused: injecting would violate Pod Security');
        return { review: denyResponse(request.uid, refusal), result: 'refused' };
      }
      log.info({ layout: outcome.status.layout, probes: outcome.status.rewrittenProbes.length, dryRun: request.dryRun === true }, 'sidecar injected');
      return { review: allowResponse(request.uid, outcome.patch, outcome.warnings), result: 'injected' };
    }
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

function podSecurityCheck(original: V1Pod, injected: V1Pod, namespace: string, facts: NamespaceFacts, mode: CaptureMode): string | undefined {
  const added = violationsAddedBy(original, injected, facts.podSecurity);
  if (added.length === 0) return undefined;
  return podSecurityRefusal(namespace, facts, mode, formatViolations(facts.podSecurity, facts.podSecurityVersion, added));
}
