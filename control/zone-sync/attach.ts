/**
 * What `--global URL --zone NAME` adds to a zone control plane (control-plane.ts calls this and nothing
 * else of zone sync): the link to the global, its mesh-wide policies beside the zone's own, and its
 * status and catalogue on the admin port.
 */
import type { Logger } from '../../common/log.js';
import type { ServiceRegistry } from '../registry.js';
import { NO_EXPORT_RULES, STANDALONE_EXPORT_DEFAULT, ZoneExports, type ExportRules } from './exports.js';
import { ZoneLink } from './zone-link.js';
import { parseCertificatesPem } from '../../ca/certificate.js';
import { trustDomainOf } from '../../ca/authority.js';

/** The trust domain the global's roots name (`spiffe://td` URI SAN), when they name one and agree. */
function trustDomainOfBundle(pem: string): string | undefined {
  let named: (string | undefined)[];
  try {
    named = parseCertificatesPem(pem, '--global-ca').map(trustDomainOf);
  } catch {
    return undefined;
  }
  const first = named[0];
  return first !== undefined && named.every((td) => td === first) ? first : undefined;
}

export interface ZoneGlobalConfig {
  /** The global's URL, or each replica's: the zone moves to the next when one does not take it. */
  readonly urls: readonly URL[];
  /** The global's trust bundle (`--global-ca FILE`). */
  readonly bundlePem: string;
  /** The zone token (`--global-token-file`), needed for the first join only. */
  readonly token: string | undefined;
  /** Undefined: the last catalogue is served however old it gets. */
  readonly maxStalenessMs: number | undefined;
  readonly exportRules: ExportRules;
  readonly ingressAddresses: readonly string[];
}

/**
 * The zone's export decision (exports.ts): with a global, its `--export` / `--no-export` rules and the
 * global's default (from the kept catalogue until the welcome); without one, the services' own word over
 * the standalone default. The zone link publishes by it and the watch hub cuts the ingress's view by it.
 */
export function zoneExportsOf(config: { global?: ZoneGlobalConfig | undefined; rootNamespace: string }, registry: ServiceRegistry): ZoneExports {
  if (config.global === undefined) return new ZoneExports(registry, NO_EXPORT_RULES, STANDALONE_EXPORT_DEFAULT, config.rootNamespace);
  return new ZoneExports(registry, config.global.exportRules, 'none', config.rootNamespace);
}

export async function attachZoneLink(
  config: { global?: ZoneGlobalConfig | undefined; dataDir: string; zone: string; trustDomain: string; rootNamespace: string },
  deps: { registry: ServiceRegistry; exports: ZoneExports; trustBundlePem: () => string; log: Logger; onPoliciesChanged: () => void; onTrustChanged?: () => void; onCatalogueChanged?: () => void; onExportsChanged?: () => void },
): Promise<ZoneLink | undefined> {
  const global = config.global;
  if (global === undefined) return undefined;
  // The global speaks for its own trust domain (its root's), which a zone with its own PKI does not share.
  const globalTrustDomain = trustDomainOfBundle(global.bundlePem) ?? config.trustDomain;
  const link = new ZoneLink({
    endpoints: global.urls.map((url) => ({ url, trustDomain: globalTrustDomain, rootNamespace: config.rootNamespace, bundlePem: global.bundlePem })),
    workloadTrustDomain: config.trustDomain,
    zone: config.zone,
    dataDir: config.dataDir,
    token: global.token,
    maxStalenessMs: global.maxStalenessMs,
    ingressAddresses: global.ingressAddresses,
    ...deps,
  });
  await link.start();
  return link;
}
