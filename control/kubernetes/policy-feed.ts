/**
 * Policy in Kubernetes mode: `TrafficPermission` custom resources (`trellis.dev/v1alpha1`), listed and
 * watched, validated with the same validator as policy files (`validatePolicyObjects`), and offered to
 * the control plane in the same shape as the file source (`PolicyState`).
 *
 * The same rule as for a policy directory: the set is validated whole, and a set with any invalid
 * resource is rejected whole while the last good set stays in force; the error names each resource
 * (`TrafficPermission <namespace>/<name>: <field>: <problem>`) and is kept for the admin port and
 * counted until a later set is valid. The CRD's own schema refuses most mistakes at `kubectl apply`;
 * this is the backstop for what a schema cannot say (selectors, root-namespace rules, path forms).
 *
 * At start-up, an invalid set is an error (as an invalid directory is): there is no last good set to
 * keep, and starting with no policy would deny every call. Agents keep serving with their last
 * snapshot while the control plane waits to be restarted with a valid set.
 *
 * Only the fields the format defines are passed on: the API server's own metadata (uid,
 * resourceVersion, managedFields, ...) and `kubectl`'s last-applied annotation are dropped.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { InputError, describeError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { configIssuesOf, formatConfigIssue, type ConfigIssue } from '../../common/yaml-source.js';
import { validatePolicyObjects, type TrafficPermission } from '../../policy/index.js';
import { policyRevision, type PolicyState } from '../policy-source.js';
import type { KubernetesMetrics } from './kubernetes-metrics.js';
import { Reflector, type ResourceSource } from './reflector.js';
import type { ReflectorTuning } from './registry-feed.js';
import { trafficPermissionSource } from './resource-sources.js';
import { CODE } from '../../common/error-codes.js';

const DROPPED_ANNOTATIONS = new Set(['kubectl.kubernetes.io/last-applied-configuration']);
const SOURCE = 'trafficpermissions';

export interface PolicyFeedOptions {
  readonly kubeConfig: KubeConfig;
  readonly rootNamespace: string;
  readonly log: Logger;
  readonly metrics?: KubernetesMetrics;
  readonly tuning?: ReflectorTuning;
  readonly source?: ResourceSource;
  readonly onChange: (state: PolicyState) => void;
  readonly onError: (state: PolicyState) => void;
}

interface StoredResource {
  /** What the validator sees: the format's fields only. */
  readonly document: unknown;
}

/** A custom resource reduced to the fields of the policy format (anything else stays, for the validator to report). */
export function policyDocument(raw: unknown): unknown {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  const { apiVersion, kind, metadata, spec } = raw as Record<string, unknown>;
  const m = (typeof metadata === 'object' && metadata !== null ? metadata : {}) as Record<string, unknown>;
  const annotations = typeof m.annotations === 'object' && m.annotations !== null ? Object.fromEntries(Object.entries(m.annotations).filter(([k]) => !DROPPED_ANNOTATIONS.has(k))) : undefined;
  return {
    apiVersion,
    kind,
    metadata: {
      name: m.name,
      namespace: m.namespace,
      ...(m.labels === undefined ? {} : { labels: m.labels }),
      ...(annotations === undefined || Object.keys(annotations).length === 0 ? {} : { annotations }),
    },
    spec,
  };
}

export class KubernetesPolicyFeed {
  private current: PolicyState = Object.freeze({ policies: Object.freeze([]), revision: 'empty', loadedAt: undefined, error: undefined });
  private readonly reflector: Reflector<StoredResource>;
  private scheduled = false;
  private started = false;
  private closed = false;

  constructor(private readonly options: PolicyFeedOptions) {
    this.reflector = new Reflector<StoredResource>({
      kubeConfig: options.kubeConfig,
      source: options.source ?? trafficPermissionSource(options.kubeConfig),
      project: (raw) => ({ document: policyDocument(raw) }),
      handler: { upsert: () => this.schedule(), delete: () => this.schedule(), synced: () => this.schedule() },
      log: options.log,
      ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
      ...options.tuning,
    });
  }

  get state(): PolicyState {
    return this.current;
  }

  /** Lists the resources once and validates them; throws the issues if the first set is invalid. */
  async start(timeoutMs = 60_000): Promise<void> {
    this.reflector.start();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.reflector.whenSynced(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new InputError(CODE.K8S_SYNC_TIMEOUT, `the Kubernetes API did not list ${SOURCE} within ${timeoutMs} ms (is the TrafficPermission CRD installed? may the control plane list and watch it?)`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    const outcome = this.validate();
    if (outcome instanceof InputError) {
      await this.reflector.stop();
      throw outcome;
    }
    this.current = Object.freeze({ policies: Object.freeze(outcome), revision: policyRevision(outcome), loadedAt: new Date().toISOString(), error: undefined });
    this.started = true;
    this.options.log.info({ revision: this.current.revision, policies: outcome.length }, 'policy loaded from TrafficPermission resources');
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.reflector.stop();
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    // One validation per burst of events (a `kubectl apply -f dir/` is many).
    setImmediate(() => {
      this.scheduled = false;
      if (this.started && !this.closed) this.reload();
    });
  }

  private reload(): void {
    const outcome = this.validate();
    if (outcome instanceof InputError) {
      const issues = (outcome.details?.issues as readonly ConfigIssue[] | undefined)?.map(formatConfigIssue) ?? [];
      this.current = Object.freeze({ ...this.current, error: Object.freeze({ message: describeError(outcome), issues: Object.freeze(issues), at: new Date().toISOString() }) });
      this.options.log.error({ issues }, 'TrafficPermission set rejected; the last good policy stays in force');
      this.options.onError(this.current);
      return;
    }
    const revision = policyRevision(outcome);
    // Relists and resyncs mostly find nothing new: the set in force (and its identity) stays.
    if (revision === this.current.revision && this.current.error === undefined) return;
    this.current = Object.freeze({ policies: Object.freeze(outcome), revision, loadedAt: new Date().toISOString(), error: undefined });
    this.options.log.info({ revision, policies: outcome.length }, 'policy loaded from TrafficPermission resources');
    this.options.onChange(this.current);
  }

  /** The validated set in a stable order, or one InputError naming every invalid resource. */
  private validate(): TrafficPermission[] | InputError {
    const keyed: { key: string; document: unknown }[] = [];
    for (const key of this.reflector.keys().sort()) keyed.push({ key, document: this.reflector.get(key)?.document });
    try {
      return validatePolicyObjects(
        keyed.map((k) => k.document),
        SOURCE,
        { rootNamespace: this.options.rootNamespace },
      );
    } catch (err) {
      const issues = configIssuesOf(err);
      if (issues.length === 0) return new InputError(CODE.CONFIG_INVALID, `invalid policy: ${describeError(err)}`);
      // Paths come back as `[i].spec...`; name the resource instead of its index.
      const named = issues.map((issue): ConfigIssue => {
        const match = /^\[(\d+)\]\.?(.*)$/.exec(issue.path);
        const resource = match === null ? undefined : keyed[Number(match[1])]?.key;
        return resource === undefined ? issue : { ...issue, file: `TrafficPermission ${resource}`, path: match?.[2] ?? '' };
      });
      const lines = named.map((i) => `  ${formatConfigIssue(i)}`);
      return new InputError(CODE.CONFIG_INVALID, `invalid TrafficPermission resources: ${named.length} problem${named.length === 1 ? '' : 's'}\n${lines.join('\n')}`, {
        details: { issues: Object.freeze(named) },
      });
    }
  }
}
