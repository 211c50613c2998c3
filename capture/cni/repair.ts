/**
 * The node agent's repair, as Istio's CNI repair controller does it: a pod marked for CNI capture that
 * got its network on this node without the plugin (it was scheduled before the plugin was in the
 * conflist, or the primary plugin rewrote the conflist meanwhile) has no redirect: its sidecar stays
 * unready and says why, and this pass deletes it so its controller creates it again, now through the
 * plugin. The sign is the plugin's record: every successful ADD writes `<state_dir>/<pod uid>.json`
 * before the runtime hands the pod its IP, so a marked pod with an IP and no record was set up without us.
 *
 * Only pods with a controller are deleted (a bare pod would be gone for good): those are reported and
 * counted instead. A pod younger than `minAgeMs` is left for the next pass.
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_CAPTURE } from '../../common/mesh-annotations.js';

export type RepairApi = Pick<CoreV1Api, 'listPodForAllNamespaces' | 'deleteNamespacedPod'>;

export interface RepairOptions {
  readonly api: RepairApi;
  readonly nodeName: string;
  /** The plugin's state directory as this process sees it. */
  readonly stateDir: string;
  readonly minAgeMs: number;
  readonly now?: () => number;
}

export interface RepairReport {
  /** `namespace/name` of pods deleted for re-creation. */
  readonly deleted: readonly string[];
  /** Pods without rules that have no controller: left alone, reported. */
  readonly unrepairable: readonly string[];
}

function needsRepairCandidate(pod: V1Pod, now: number, minAgeMs: number): boolean {
  if (pod.metadata?.annotations?.[ANNOTATION_CAPTURE] !== 'cni') return false;
  if (pod.metadata.deletionTimestamp != null || pod.spec?.hostNetwork === true) return false;
  if (pod.status?.podIP == null || pod.status.podIP === '') return false;
  if (pod.status.phase !== 'Pending' && pod.status.phase !== 'Running') return false;
  const created = pod.metadata.creationTimestamp === undefined ? now : new Date(pod.metadata.creationTimestamp).getTime();
  return now - created >= minAgeMs;
}

export async function repairPass(options: RepairOptions): Promise<RepairReport> {
  const now = (options.now ?? Date.now)();
  const list = await options.api.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${options.nodeName}` });
  const deleted: string[] = [];
  const unrepairable: string[] = [];
  for (const pod of list.items) {
    if (!needsRepairCandidate(pod, now, options.minAgeMs)) continue;
    const uid = pod.metadata?.uid ?? '';
    if (!/^[A-Za-z0-9-]{1,64}$/.test(uid)) continue;
    const recorded = await access(join(options.stateDir, `${uid}.json`)).then(
      () => true,
      () => false,
    );
    if (recorded) continue;
    const id = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
    if (!(pod.metadata?.ownerReferences ?? []).some((o) => o.controller === true)) {
      unrepairable.push(id);
      continue;
    }
    try {
      // Preconditions: delete exactly this pod, not a successor that took its name (StatefulSets).
      await options.api.deleteNamespacedPod({ namespace: pod.metadata?.namespace ?? '', name: pod.metadata?.name ?? '', body: { preconditions: { uid } } });
      deleted.push(id);
    } catch (err) {
      if ((err as { code?: number }).code !== 404 && (err as { code?: number }).code !== 409) throw err;
    }
  }
  return { deleted, unrepairable };
}
