/**
 * What the injector needs to know about a pod's namespace that the AdmissionReview does not carry: its
 * Pod Security enforce level (label `pod-security.kubernetes.io/enforce`, and `-version`) and its capture
 * mode (label `trellis.dev/capture-mode`). Read with a GET of the namespace (RBAC: get on namespaces) and
 * cached briefly: a burst of pods from one Deployment costs one read, and a label changed a moment ago
 * takes effect within the TTL. The cache is bounded; concurrent misses for one namespace share one read.
 */
import type { CoreV1Api, V1Namespace } from '@kubernetes/client-node';
import { describeError, TrellisError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';
import { LABEL_CAPTURE_MODE, parseCaptureMode, type CaptureMode } from '../common/mesh-annotations.js';
import { LABEL_ENFORCE, LABEL_ENFORCE_VERSION, parseLevel, type PodSecurityLevel } from './pod-security.js';

export interface NamespaceFacts {
  readonly podSecurity: PodSecurityLevel;
  /** `latest` or `v1.NN`, as labelled; shown in messages. */
  readonly podSecurityVersion: string;
  /** Set when the namespace is labelled; otherwise the mesh-wide mode applies. */
  readonly captureMode: CaptureMode | undefined;
  /** A `trellis.dev/capture-mode` value that is neither init nor cni (the pod is refused, naming it). */
  readonly badCaptureMode?: string;
}

export interface NamespaceDirectory {
  facts(namespace: string): Promise<NamespaceFacts>;
}

export function namespaceFacts(labels: Readonly<Record<string, string>>): NamespaceFacts {
  const mode = labels[LABEL_CAPTURE_MODE];
  const captureMode = parseCaptureMode(mode);
  return Object.freeze({
    podSecurity: parseLevel(labels[LABEL_ENFORCE]),
    podSecurityVersion: labels[LABEL_ENFORCE_VERSION] ?? 'latest',
    captureMode,
    ...(mode !== undefined && captureMode === undefined ? { badCaptureMode: mode } : {}),
  });
}

/** For an injector run without API access: every namespace is `privileged` with the mesh-wide mode. */
export const UNKNOWN_NAMESPACES: NamespaceDirectory = Object.freeze({ facts: () => Promise.resolve(namespaceFacts({})) });

export interface ApiNamespaceDirectoryOptions {
  readonly api: Pick<CoreV1Api, 'readNamespace'>;
  readonly ttlMs?: number;
  readonly maxEntries?: number;
  readonly now?: () => number;
}

export class ApiNamespaceDirectory implements NamespaceDirectory {
  private readonly cache = new Map<string, { readonly at: number; readonly facts: Promise<NamespaceFacts> }>();
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(private readonly options: ApiNamespaceDirectoryOptions) {
    this.ttlMs = options.ttlMs ?? 10_000;
    this.maxEntries = options.maxEntries ?? 4_096;
    this.now = options.now ?? Date.now;
  }

  facts(namespace: string): Promise<NamespaceFacts> {
    const now = this.now();
    const hit = this.cache.get(namespace);
    if (hit !== undefined && now - hit.at < this.ttlMs) return hit.facts;
    if (this.cache.size >= this.maxEntries) this.cache.delete(this.cache.keys().next().value as string);
    const facts = this.read(namespace);
    this.cache.set(namespace, { at: now, facts });
    // A failed read is not cached: the next pod asks again.
    facts.catch(() => this.cache.delete(namespace));
    return facts;
  }

  private async read(namespace: string): Promise<NamespaceFacts> {
    let ns: V1Namespace;
    try {
      ns = await this.options.api.readNamespace({ name: namespace });
    } catch (err) {
      throw new TrellisError(CODE.INJECTOR_NAMESPACE_READ, `cannot read namespace "${namespace}" (its Pod Security level and capture mode decide what is injected): ${describeError(err)}`, {
        side: 'upstream',
        retryable: true,
        cause: err,
      });
    }
    return namespaceFacts(ns.metadata?.labels ?? {});
  }
}
