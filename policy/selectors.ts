/**
 * The names a policy uses for services: `from` entries (who calls) and `spec.destination` (who is called).
 * Parsed into namespace and service parts once, at validation and compilation, so that matching a caller
 * compares its SPIFFE ID's parts for equality and never looks at substrings.
 */

/** A Kubernetes namespace or service-account name: an RFC 1123 DNS label. */
export const DNS_LABEL = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;
export const DNS_LABEL_HINT = 'a DNS label (lowercase letters, digits and "-", at most 63 characters, starting and ending with a letter or digit)';

export const ANY = '*';

/** `namespace` and `service` are DNS labels or `*`; a `*` namespace always has a `*` service (any caller). */
export interface NamePattern {
  readonly namespace: string;
  readonly service: string;
}

/**
 * A `from` entry: `trustDomain` is set only when the entry is a SPIFFE ID or SPIFFE pattern (which names it);
 * `zone` only when it names a zone: a zone name, or a zone pattern `PREFIX*` (every zone whose name starts
 * with PREFIX). Without `zone` the entry matches callers of every zone, and of an unknown one.
 */
export interface SourcePattern extends NamePattern {
  readonly trustDomain?: string;
  readonly zone?: string;
}

/** A zone pattern's prefix (`eu-*` → `eu-`), or undefined for a plain zone name. */
export function zonePrefix(zone: string): string | undefined {
  return zone.endsWith(ANY) ? zone.slice(0, -1) : undefined;
}

/** Whether a caller of zone `zone` (undefined: unknown) matches a `from` entry's zone `pattern`. */
export function zoneMatches(pattern: string, zone: string | undefined): boolean {
  if (zone === undefined) return false;
  const prefix = zonePrefix(pattern);
  return prefix === undefined ? zone === pattern : zone.startsWith(prefix);
}

const ZONE_HINT = 'a zone name (a DNS label) or a zone pattern "PREFIX*" (e.g. "eu-*")';
// A prefix: one or more characters a zone name may start with, not ending in a way no zone could continue.
const ZONE_PREFIX = /^[a-z0-9][-a-z0-9]{0,61}$/;

/** The zone-qualified forms (zone, then namespace and service, either may be "*"): this mesh's callers in one zone or a pattern of zones. */
function parseZonedSource(text: string, parts: readonly string[]): Parsed<SourcePattern> {
  const expected = `expected "ZONE/NAMESPACE/SERVICE", "ZONE/NAMESPACE/*" or "ZONE/*/*" (ZONE: ${ZONE_HINT}), got ${JSON.stringify(text)}`;
  if (parts.length !== 3) return { ok: false, message: `${expected}: too many "/"` };
  const [zone, namespace, service] = parts as [string, string, string];
  if (zone === ANY) return { ok: false, message: `${expected}: a "*" zone means every zone, which an entry without a zone already says; write "${namespace}/${service}"` };
  const prefix = zonePrefix(zone);
  if (prefix !== undefined ? !ZONE_PREFIX.test(prefix) : !isLabel(zone)) return { ok: false, message: `${expected}: zone "${zone}" is not ${ZONE_HINT}` };
  if (namespace === ANY && service !== ANY) return { ok: false, message: `${expected}: a "*" namespace needs a "*" service ("${zone}/*/*")` };
  if (namespace !== ANY && !isLabel(namespace)) return { ok: false, message: `${expected}: namespace "${namespace}" is not ${DNS_LABEL_HINT}` };
  if (service !== ANY && !isLabel(service)) return { ok: false, message: `${expected}: service "${service}" is not ${DNS_LABEL_HINT}` };
  return { ok: true, value: { zone, namespace, service: namespace === ANY ? ANY : service } };
}

/** A SPIFFE trust domain name: lowercase letters, digits, `.`, `-` and `_` (SPIFFE ID standard 2.1), at most 255. */
export const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
const SPIFFE_SOURCE = /^spiffe:\/\/([^/]+)\/(?:\*|ns\/([^/]+)\/(?:\*|sa\/([^/]+)))$/;
const SPIFFE_HINT = 'expected "spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE", "spiffe://TRUST_DOMAIN/ns/NAMESPACE/*" or "spiffe://TRUST_DOMAIN/*"';

/**
 * A caller named by SPIFFE ID: the whole ID, every service of one namespace of a trust domain, or every
 * workload of a trust domain. The only way a rule can name a caller of a federated (foreign) trust domain:
 * short names always mean this mesh's own trust domain.
 */
function parseSpiffeSource(text: string): Parsed<SourcePattern> {
  const m = SPIFFE_SOURCE.exec(text);
  if (m === null) return { ok: false, message: `${SPIFFE_HINT}, got ${JSON.stringify(text)}` };
  const [, trustDomain, namespace, service] = m as unknown as [string, string, string | undefined, string | undefined];
  if (!TRUST_DOMAIN.test(trustDomain) || trustDomain.startsWith('.') || trustDomain.endsWith('.')) {
    return { ok: false, message: `${JSON.stringify(trustDomain)} is not a trust domain (lowercase letters, digits, ".", "-" and "_")` };
  }
  if (namespace !== undefined && !isLabel(namespace)) return { ok: false, message: `${SPIFFE_HINT}, got ${JSON.stringify(text)}: namespace "${namespace}" is not ${DNS_LABEL_HINT}` };
  if (service !== undefined && !isLabel(service)) return { ok: false, message: `${SPIFFE_HINT}, got ${JSON.stringify(text)}: service "${service}" is not ${DNS_LABEL_HINT}` };
  return { ok: true, value: { trustDomain, namespace: namespace ?? ANY, service: service ?? ANY } };
}

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly message: string };

function isLabel(text: string): boolean {
  return DNS_LABEL.test(text);
}

/**
 * `*`, `service`, `namespace/service` or `namespace/*` (this mesh's trust domain; a bare service is in the
 * policy's own namespace), or a SPIFFE ID or pattern (`parseSpiffeSource`) naming its trust domain.
 */
export function parseSourceSelector(text: string, policyNamespace: string): Parsed<SourcePattern> {
  const expected =
    'expected "service", "namespace/service", "namespace/*", "*", a zone-qualified "zone/namespace/service" ("zone/namespace/*", "zone/*/*", zone patterns "prefix*/...") or a SPIFFE ID ("spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE", "spiffe://TRUST_DOMAIN/ns/NAMESPACE/*", "spiffe://TRUST_DOMAIN/*")';
  if (text.startsWith('spiffe://')) return parseSpiffeSource(text);
  if (text === ANY) return { ok: true, value: { namespace: ANY, service: ANY } };
  const parts = text.split('/');
  if (parts.length >= 3) return parseZonedSource(text, parts);
  if (parts.length === 1) {
    return isLabel(text) ? { ok: true, value: { namespace: policyNamespace, service: text } } : { ok: false, message: `${expected}, got ${JSON.stringify(text)}: "${text}" is not ${DNS_LABEL_HINT}` };
  }
  const [namespace, service] = parts as [string, string];
  if (parts.length !== 2 || !isLabel(namespace) || (service !== ANY && !isLabel(service))) {
    return { ok: false, message: `${expected}, got ${JSON.stringify(text)} (names are DNS labels)` };
  }
  return { ok: true, value: { namespace, service } };
}

/**
 * Outside the root namespace: `service` or `*` (every service of the policy's namespace).
 * In the root namespace also `namespace/service`, `namespace/*`, and `*` meaning every service of every
 * namespace: that is how a platform team writes mesh-wide rules that service owners cannot override.
 */
export function parseDestination(text: string, policyNamespace: string, rootNamespace: string): Parsed<NamePattern> {
  const isRoot = policyNamespace === rootNamespace;
  if (text === ANY) return { ok: true, value: isRoot ? { namespace: ANY, service: ANY } : { namespace: policyNamespace, service: ANY } };
  const parts = text.split('/');
  if (parts.length === 1) {
    return isLabel(text) ? { ok: true, value: { namespace: policyNamespace, service: text } } : { ok: false, message: `expected a service name or "*", got ${JSON.stringify(text)}: not ${DNS_LABEL_HINT}` };
  }
  const [namespace, service] = parts as [string, string];
  if (parts.length !== 2 || !isLabel(namespace) || (service !== ANY && !isLabel(service))) {
    return { ok: false, message: `expected "service", "*"${isRoot ? ', "namespace/service" or "namespace/*"' : ''}, got ${JSON.stringify(text)}` };
  }
  if (!isRoot && namespace !== policyNamespace) {
    return {
      ok: false,
      message: `names a service in namespace "${namespace}", but only policies in the root namespace "${rootNamespace}" may name destinations in other namespaces (put this policy in namespace "${namespace}")`,
    };
  }
  return { ok: true, value: { namespace, service } };
}
