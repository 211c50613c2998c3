/**
 * Policy in Kubernetes mode: `TrafficPermission` custom resources (`trellis.dev/v1alpha1`) and the
 * traffic-management kinds (`TrafficRoute`, `RetryPolicy`, `TimeoutPolicy`, `OutlierDetection`,
 * `CircuitBreaker`, `ZoneFailover`), listed and watched, validated with the same validators as policy files
 * (`validatePolicyObjects`, `validateTrafficObjects`), and offered to the control plane in the same shape
 * as the file source (`PolicyState`, traffic included).
 *
 * The same rule as for a policy directory: the set of all seven kinds is validated whole, and a set with
 * any invalid resource is rejected whole (permissions and traffic alike) while the last good set stays in
 * force; the error names each resource (`RetryPolicy <namespace>/<name>: <field>: <problem>`) and is
 * kept for the admin port and counted until a later set is valid. The CRD's own schema refuses most mistakes at `kubectl apply`;
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
import { validateTrafficObjects, type TrafficResource } from '../../policy/traffic/index.js';
import { policyRevision, type PolicyState } from '../policy-source.js';
import type { KubernetesMetrics } from './kubernetes-metrics.js';
import { Reflector, type ResourceSource } from '../../common/kubernetes-reflector.js';
import type { ReflectorTuning } from './registry-feed.js';
import { TRAFFIC_KIND_PLURALS, trafficPermissionSource, trellisResourceSource } from './resource-sources.js';
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
  /** The traffic kinds' sources (tests); default: their CRDs through the API. */
  readonly trafficSources?: readonly ResourceSource[];
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
  /** One per traffic kind, in TRAFFIC_KIND_PLURALS order. */
  private readonly trafficReflectors: Reflector<StoredResource>[];
  private scheduled = false;
  private started = false;
  private closed = false;

  constructor(private readonly options: PolicyFeedOptions) {
    const reflect = (source: ResourceSource): Reflector<StoredResource> =>
      new Reflector<StoredResource>({
        kubeConfig: options.kubeConfig,
        source,
        project: (raw) => ({ document: policyDocument(raw) }),
        handler: { upsert: () => this.schedule(), delete: () => this.schedule(), synced: () => this.schedule() },
        log: options.log,
        ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
        ...options.tuning,
      });
    this.reflector = reflect(options.source ?? trafficPermissionSource(options.kubeConfig));
    const trafficSources = options.trafficSources ?? Object.values(TRAFFIC_KIND_PLURALS).map((plural) => trellisResourceSource(options.kubeConfig, plural));
    this.trafficReflectors = trafficSources.map(reflect);
  }

  private get reflectors(): Reflector<StoredResource>[] {
    return [this.reflector, ...this.trafficReflectors];
  }

  get state(): PolicyState {
    return this.current;
  }

  /** Lists the resources once and validates them; throws the issues if the first set is invalid. */
  async start(timeoutMs = 60_000): Promise<void> {
    const synced = new Set<string>();
    for (const r of this.reflectors) {
      r.start();
      void r.whenSynced().then(() => synced.add(r.resource));
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.all(this.reflectors.map((r) => r.whenSynced())),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            const missing = this.reflectors.map((r) => r.resource).filter((r) => !synced.has(r));
            reject(new InputError(CODE.K8S_SYNC_TIMEOUT, `the Kubernetes API did not list ${missing.join(', ')} within ${timeoutMs} ms (are the trellis.dev CRDs of deploy/kubernetes/base/crds installed? may the control plane list and watch them?)`));
          }, timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    const outcome = this.validate();
    if (outcome instanceof InputError) {
      await this.stopAll();
      throw outcome;
    }
    this.current = stateOf(outcome);
    this.started = true;
    this.options.log.info({ revision: this.current.revision, policies: outcome.policies.length, traffic: outcome.traffic.length }, 'policy loaded from trellis.dev resources');
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.stopAll();
  }

  private async stopAll(): Promise<void> {
    await Promise.all(this.reflectors.map((r) => r.stop()));
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
      this.options.log.error({ issues }, 'trellis.dev resource set rejected; the last good policy and traffic stay in force');
      this.options.onError(this.current);
      return;
    }
    const revision = policyRevision(outcome.policies, outcome.traffic);
    // Relists and resyncs mostly find nothing new: the set in force (and its identity) stays.
    if (revision === this.current.revision && this.current.error === undefined) return;
    this.current = stateOf(outcome);
    this.options.log.info({ revision, policies: outcome.policies.length, traffic: outcome.traffic.length }, 'policy loaded from trellis.dev resources');
    this.options.onChange(this.current);
  }

  /** The validated sets in a stable order, or one InputError naming every invalid resource of every kind. */
  private validate(): Validated | InputError {
    const permissions = this.keyed([this.reflector]);
    const traffic = this.keyed(this.trafficReflectors);
    const issues: ConfigIssue[] = [];
    const run = <T>(keyed: readonly Keyed[], check: (docs: unknown[]) => T[]): T[] => {
      try {
        return check(keyed.map((k) => k.document));
      } catch (err) {
        const found = configIssuesOf(err);
        if (found.length === 0) issues.push({ file: 'trellis.dev resources', line: 0, column: 0, path: '', message: describeError(err) });
        // Paths come back as `[i].spec...`; name the resource instead of its index.
        for (const issue of found) {
          const match = /^\[(\d+)\]\.?(.*)$/.exec(issue.path);
          const resource = match === null ? undefined : keyed[Number(match[1])];
          issues.push(resource === undefined ? issue : { ...issue, file: `${resource.kind} ${resource.key}`, path: match?.[2] ?? '' });
        }
        return [];
      }
    };
    const policies = run(permissions, (docs) => validatePolicyObjects(docs, SOURCE, { rootNamespace: this.options.rootNamespace }));
    const resources = run(traffic, (docs) => validateTrafficObjects(docs, 'traffic'));
    if (issues.length === 0) return { policies, traffic: resources };
    const lines = issues.map((i) => `  ${formatConfigIssue(i)}`);
    return new InputError(CODE.CONFIG_INVALID, `invalid trellis.dev resources: ${issues.length} problem${issues.length === 1 ? '' : 's'}\n${lines.join('\n')}`, {
      details: { issues: Object.freeze(issues) },
    });
  }

  /** Every stored resource of `reflectors`, by `namespace/name` within each kind, with the kind that names it in errors. */
  private keyed(reflectors: readonly Reflector<StoredResource>[]): Keyed[] {
    const out: Keyed[] = [];
    for (const r of reflectors) {
      const kind = KIND_OF_PLURAL.get(r.resource) ?? r.resource;
      for (const key of r.keys().sort()) out.push({ key, kind, document: r.get(key)?.document });
    }
    return out;
  }
}

interface Keyed {
  readonly key: string;
  readonly kind: string;
  readonly document: unknown;
}

interface Validated {
  readonly policies: TrafficPermission[];
  readonly traffic: TrafficResource[];
}

const KIND_OF_PLURAL = new Map<string, string>([[SOURCE, 'TrafficPermission'], ...Object.entries(TRAFFIC_KIND_PLURALS).map(([kind, plural]): [string, string] => [plural, kind])]);

function stateOf(v: Validated): PolicyState {
  return Object.freeze({
    policies: Object.freeze(v.policies),
    traffic: Object.freeze(v.traffic),
    revision: policyRevision(v.policies, v.traffic),
    loadedAt: new Date().toISOString(),
    error: undefined,
  });
}
