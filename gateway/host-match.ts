/**
 * Host names as routes and certificates name them: exact (`shop.example.com`) or a wildcard of one or more
 * leading labels (`*.example.com` matches `a.example.com` and `a.b.example.com`, never `example.com`, as
 * the Gateway API defines it); `*` alone matches any host. Request hosts are compared lower-cased and
 * without their port.
 */

/** A lower-case DNS name, `*.` followed by one, or `*`. */
export const HOST_PATTERN = /^(?:\*|(?:\*\.)?[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*)$/;

/** The host of a `Host` header or `:authority`, lower-cased, without port; undefined when malformed. */
export function requestHost(value: string | undefined): string | undefined {
  if (value === undefined || value.length === 0 || value.length > 255) return undefined;
  let host = value.toLowerCase();
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    if (end < 0) return undefined;
    const rest = host.slice(end + 1);
    if (rest !== '' && !/^:\d{1,5}$/.test(rest)) return undefined;
    return host.slice(0, end + 1);
  }
  const colon = host.indexOf(':');
  if (colon >= 0) {
    if (!/^\d{1,5}$/.test(host.slice(colon + 1))) return undefined;
    host = host.slice(0, colon);
  }
  if (host.endsWith('.')) host = host.slice(0, -1);
  return /^[a-z0-9.-]+$/.test(host) ? host : undefined;
}

/** Whether `pattern` (HOST_PATTERN) covers `host` (a `requestHost` result). */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern === '*') return true;
  if (pattern.startsWith('*.')) return host.length > pattern.length - 1 && host.endsWith(pattern.slice(1));
  return pattern === host;
}

/** How specific a pattern is, for choosing among several that match: exact, then longer wildcards, then `*`. */
export function hostSpecificity(pattern: string): number {
  if (pattern === '*') return 0;
  if (pattern.startsWith('*.')) return pattern.length;
  return 10_000 + pattern.length;
}
