/**
 * From the global's `trust` records (each zone's roots, keyed `<zone>/<trust-domain>`) to the federated
 * bundles this zone's agents get: one entry per trust domain other than ours, holding every distinct root
 * any zone of that trust domain published. Zones of our own trust domain share our root (an intermediate
 * per zone) and add nothing. At most MAX_FEDERATED_TRUST_DOMAINS trust domains, first by name; the rest are
 * reported by `dropped` so the control plane can say so.
 */
import { MAX_FEDERATED_TRUST_DOMAINS } from '../../api/control-protocol.js';
import type { Logger } from '../../common/log.js';

export interface FederatedBundles {
  readonly bundles: Readonly<Record<string, string>>;
  readonly dropped: readonly string[];
}

const CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export function federatedBundles(records: readonly (readonly [string, unknown])[], meshTrustDomain: string): FederatedBundles {
  const roots = new Map<string, Set<string>>();
  for (const [, value] of records) {
    const v = value as { trustDomain?: unknown; rootsPem?: unknown };
    if (typeof v.trustDomain !== 'string' || typeof v.rootsPem !== 'string' || v.trustDomain === meshTrustDomain) continue;
    let set = roots.get(v.trustDomain);
    if (set === undefined) roots.set(v.trustDomain, (set = new Set()));
    for (const pem of v.rootsPem.match(CERT) ?? []) set.add(pem);
  }
  const names = [...roots.keys()].filter((td) => (roots.get(td) as Set<string>).size > 0).sort();
  const kept = names.slice(0, MAX_FEDERATED_TRUST_DOMAINS);
  return Object.freeze({
    bundles: Object.freeze(Object.fromEntries(kept.map((td) => [td, `${[...(roots.get(td) as Set<string>)].join('\n')}\n`]))),
    dropped: Object.freeze(names.slice(MAX_FEDERATED_TRUST_DOMAINS)),
  });
}

/** The federated bundles in force, recomputed when `trust` records change; says whether they changed. */
export class FederationView {
  private current: FederatedBundles = { bundles: Object.freeze({}), dropped: [] };
  private json = '{}';

  constructor(
    private readonly meshTrustDomain: string,
    private readonly log: Logger,
  ) {}

  get bundles(): Readonly<Record<string, string>> {
    return this.current.bundles;
  }

  refresh(records: readonly (readonly [string, unknown])[]): boolean {
    const next = federatedBundles(records, this.meshTrustDomain);
    const json = JSON.stringify(next.bundles);
    if (json === this.json) return false;
    if (next.dropped.length > 0) this.log.error({ dropped: next.dropped, limit: MAX_FEDERATED_TRUST_DOMAINS }, 'too many federated trust domains; these are not trusted');
    this.log.info({ trustDomains: Object.keys(next.bundles) }, 'federated trust domains updated');
    this.current = next;
    this.json = json;
    return true;
  }
}
