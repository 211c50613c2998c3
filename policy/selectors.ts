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

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly message: string };

function isLabel(text: string): boolean {
  return DNS_LABEL.test(text);
}

/** `*`, `service`, `namespace/service` or `namespace/*`; a bare service is in the policy's own namespace. */
export function parseSourceSelector(text: string, policyNamespace: string): Parsed<NamePattern> {
  const expected = 'expected "service", "namespace/service", "namespace/*" or "*"';
  if (text === ANY) return { ok: true, value: { namespace: ANY, service: ANY } };
  const parts = text.split('/');
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
