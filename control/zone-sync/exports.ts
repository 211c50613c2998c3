/**
 * Which services a zone exports, and the record it sends for each. Export is explicit; the first of
 * these that speaks decides:
 *  1. the zone control plane's rules (`--export NS/NAME|NS/*`, `--no-export NS/NAME|NS/*`): the most
 *     specific rule wins (a service's own over its namespace's), and `--no-export` over `--export` at
 *     equal specificity. They come first because they are the zone operator's, who must be able to keep
 *     a service in the zone whatever its owner labels it (as an Istio `exportTo` in the mesh config
 *     bounds what a Service's annotation may widen);
 *  2. the service's own word: in Kubernetes its Service's `trellis.dev/export` label or annotation, else
 *     its Namespace's `trellis.dev/export` label (resolved by the feed into the service's definition);
 *     in universal mode its agents' `--export` / `--no-export`. When instances disagree, not exporting
 *     wins (a mistake then hides a service rather than publishing one) and the disagreement is reported;
 *  3. the mesh-wide default the global's operator chose (`--export-default all|none`, in the welcome).
 *
 * The record is built from the registry: the service's ports, the SPIFFE ID that serves it, and healthy
 * and total endpoint counts per locality (`localityCounts`: the zone, or `zone/subzone` for endpoints
 * labelled with a subzone).
 */
import { workloadId } from '../../ca/spiffe-id.js';
import { InputError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';
import type { ServiceRegistry } from '../registry.js';
import type { ExportDefault } from './protocol.js';
import { localityCounts, RECORD_LIMITS, serviceKey, type ExportedService, type ZoneIngress } from './records.js';
import { INGRESS_SERVICE } from '../../api/zone-ingress.js';

export interface ExportRules {
  readonly exported: readonly string[];
  readonly hidden: readonly string[];
}

const RULE = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?\/(?:\*|[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)$/;

export function parseExportRule(text: string, flag: string): string {
  if (!RULE.test(text)) throw new InputError(CODE.CLI_USAGE, `${flag}: "${text}" is not NAMESPACE/SERVICE or NAMESPACE/*`);
  return text;
}

/** What a service says about its export (`ServiceRegistry.exportWords`). */
export interface ExportWords {
  readonly platform?: boolean;
  readonly instances: readonly (boolean | undefined)[];
}

/** The service's own word: the platform's if any, else its instances' (`false` over `true`); `conflict` when instances disagree. */
export function serviceExportWord(words: ExportWords): { readonly word: boolean | undefined; readonly conflict: boolean } {
  if (words.platform !== undefined) return { word: words.platform, conflict: false };
  const no = words.instances.includes(false);
  const yes = words.instances.includes(true);
  return { word: no ? false : yes ? true : undefined, conflict: no && yes };
}

/** Whether (namespace, service) is exported under the zone's `rules`, the service's own `word`, and the mesh-wide `fallback`. */
export function isExported(rules: ExportRules, fallback: ExportDefault, namespace: string, service: string, word?: boolean): boolean {
  const own = `${namespace}/${service}`;
  if (rules.hidden.includes(own)) return false;
  if (rules.exported.includes(own)) return true;
  const all = `${namespace}/*`;
  if (rules.hidden.includes(all)) return false;
  if (rules.exported.includes(all)) return true;
  if (word !== undefined) return word;
  return fallback === 'all';
}

/** No zone rules: a zone without a global (`--export` / `--no-export` need `--global`). */
export const NO_EXPORT_RULES: ExportRules = Object.freeze({ exported: Object.freeze([]), hidden: Object.freeze([]) });

/**
 * The export decision for this zone's own services, in one place: the zone link publishes a service's
 * record upward exactly when `decide` says so, and the watch hub gives the zone ingress exactly those
 * services (and nothing else), so what other zones are told they can reach and what the ingress forwards
 * to can never disagree. The zone's rules are fixed at start; the mesh-wide default comes with the
 * global's welcome (kept in the catalogue file meanwhile). A zone without a global has no rules and no
 * global's default: it decides by the services' own word and `STANDALONE_EXPORT_DEFAULT`.
 *
 * Never exported: a service with no instance in this zone (another zone's, or one that left), and the
 * zone ingress itself (published as the zone's ingress record instead).
 */
export class ZoneExports {
  private fallbackNow: ExportDefault;

  constructor(
    private readonly registry: Pick<ServiceRegistry, 'hasMeshService' | 'exportWords'>,
    private readonly rules: ExportRules,
    fallback: ExportDefault,
    private readonly rootNamespace: string,
  ) {
    this.fallbackNow = fallback;
  }

  get fallback(): ExportDefault {
    return this.fallbackNow;
  }

  /** Sets the mesh-wide default; true when it changed (every decision may then have changed). */
  setFallback(fallback: ExportDefault): boolean {
    if (fallback === this.fallbackNow) return false;
    this.fallbackNow = fallback;
    return true;
  }

  /** Whether the zone exports (namespace, service) now; `conflict` when its instances disagree on their word. */
  decide(namespace: string, service: string): { readonly exported: boolean; readonly conflict: boolean } {
    if (namespace === this.rootNamespace && service === INGRESS_SERVICE) return { exported: false, conflict: false };
    if (!this.registry.hasMeshService(namespace, service)) return { exported: false, conflict: false };
    const { word, conflict } = serviceExportWord(this.registry.exportWords(namespace, service));
    return { exported: isExported(this.rules, this.fallbackNow, namespace, service, word), conflict };
  }

  exported(namespace: string, service: string): boolean {
    return this.decide(namespace, service).exported;
  }
}

/**
 * The mesh-wide default of a zone that has no global: the global's own default (`--export-default`
 * absent), so a standalone zone's ingress forwards to what a fresh multi-zone mesh would export, and a
 * service's own `--no-export` (or `trellis.dev/export: "false"`) keeps it out of the ingress.
 */
export const STANDALONE_EXPORT_DEFAULT: ExportDefault = 'all';

/** The record of one exported service, or undefined when the service has no instance (left the mesh). */
export function exportedService(registry: ServiceRegistry, trustDomain: string, zone: string, namespace: string, name: string): ExportedService | undefined {
  if (!registry.hasMeshService(namespace, name)) return undefined;
  const upstream = registry.upstream(namespace, name);
  return {
    zone,
    namespace,
    name,
    ports: upstream.ports.map((p) => ({ port: p.port, protocol: p.protocol, ...(p.name === undefined ? {} : { name: p.name }), targetPort: p.targetPort })),
    identities: [workloadId(trustDomain, namespace, name).toString()],
    localities: localityCounts(zone, upstream.endpoints),
  };
}

export function exportKey(zone: string, namespace: string, name: string): string {
  return serviceKey(zone, namespace, name);
}

/**
 * The registered zone ingresses (`trellis ingress run`, api/zone-ingress.ts) as the zone's ingress record
 * `<zone>/registered`: each healthy instance's public address; undefined when there is none. (The
 * `--ingress-address` flag is its own record, `<zone>/default`.) An ingress is never exported as a service.
 */
export function registeredIngresses(registry: ServiceRegistry, rootNamespace: string, zone: string): ZoneIngress | undefined {
  if (!registry.hasMeshService(rootNamespace, INGRESS_SERVICE)) return undefined;
  const addresses = registry
    .upstream(rootNamespace, INGRESS_SERVICE)
    .endpoints.filter((e) => e.healthy)
    .map((e) => `${e.address.includes(':') ? `[${e.address}]` : e.address}:${e.tunnelPort}`)
    .sort()
    .slice(0, RECORD_LIMITS.addresses);
  return addresses.length === 0 ? undefined : { zone, addresses };
}
