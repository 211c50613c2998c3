/**
 * What the plugin needs from the node: a command runner inside a network namespace given by path (the
 * runtime's CNI_NETNS, e.g. /var/run/netns/cni-… or /proc/PID/ns/net, entered with nsenter), and a pod
 * lookup through the API with the kubeconfig `trellis cni install` wrote (pod-reader.ts). The API read has
 * a short time limit: the runtime waits for the plugin while the pod's sandbox is being created.
 */
import { existsSync } from 'node:fs';
import { COMMAND_TIMEOUT_MS, hostRunner, type CommandRunner } from '../command-runner.js';
import type { PodLookup } from './plugin.js';
import { httpsPodLookup } from './pod-reader.js';

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

/** Reads pods with the kubeconfig at `path` (get on pods is all the plugin's RBAC allows). */
export function apiPodLookup(path: string, timeoutMs = POD_READ_TIMEOUT_MS): PodLookup {
  return httpsPodLookup(path, timeoutMs);
}
