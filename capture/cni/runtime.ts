/**
 * What the plugin needs from the node: a command runner inside a network namespace given by path (the
 * runtime's CNI_NETNS, e.g. /var/run/netns/cni-… or /proc/PID/ns/net, entered with nsenter), and a pod
 * lookup through the API with the kubeconfig `trellis cni install` wrote. The API read has a short time
 * limit: the runtime waits for the plugin while the pod's sandbox is being created.
 */
import { existsSync } from 'node:fs';
import type { CoreV1Api } from '@kubernetes/client-node';
import { COMMAND_TIMEOUT_MS, hostRunner, type CommandRunner } from '../command-runner.js';
import type { PodLookup, PodMarks } from './plugin.js';

/** Runs commands in the network namespace at `path` (nsenter --net=PATH): the host's iptables binaries, the pod's tables. */
export function netnsPathRunner(path: string, timeoutMs = COMMAND_TIMEOUT_MS): CommandRunner {
  if (!path.startsWith('/') || path.includes('\0')) throw new Error(`"${path}" is not a network namespace path`);
  const host = hostRunner(timeoutMs);
  return Object.freeze({
    where: `network namespace ${path}`,
    run: (file: string, args: readonly string[], input?: string) => host.run('nsenter', [`--net=${path}`, '--', file, ...args], input),
  });
}

export function netnsExists(path: string): boolean {
  return path !== '' && existsSync(path);
}

export const POD_READ_TIMEOUT_MS = 5_000;

function isNotFound(err: unknown): boolean {
  return (err as { code?: number }).code === 404;
}

/** Reads pods with the kubeconfig at `path` (get on pods is all the plugin's RBAC allows). */
export function apiPodLookup(path: string, timeoutMs = POD_READ_TIMEOUT_MS): PodLookup {
  let api: CoreV1Api | undefined;
  return {
    async get(namespace: string, name: string): Promise<PodMarks | null> {
      if (api === undefined) {
        // Loaded on first use: VERSION, DEL and calls for other namespaces never pay for the client.
        const [{ CoreV1Api: Api, KubeConfig }, { makeTrellisApiClient }] = await Promise.all([import('@kubernetes/client-node'), import('../../common/kubernetes-client.js')]);
        const kc = new KubeConfig();
        kc.loadFromFile(path);
        api = makeTrellisApiClient(kc, Api, 'cni');
      }
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the API server did not answer within ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        const pod = await Promise.race([api.readNamespacedPod({ namespace, name }), timeout]);
        return { uid: pod.metadata?.uid ?? '', annotations: pod.metadata?.annotations ?? {} };
      } catch (err) {
        if (isNotFound(err)) return null;
        throw err;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
