/**
 * Which HTTP/1.1 upgrades the mesh carries: the one rule both sidecars apply, on every path an upgrade can
 * take (the outbound's node:http path, the inbound's tunnelled-upgrade stream).
 *
 * Why a rule at all: after a 101 the connection is no longer HTTP to us, and nothing the app receives on it is
 * authorized again. An upgrade to `h2c` on an allowed path would carry any number of HTTP/2 requests to any
 * path past the policy, so it is never carried; other protocols only when the destination port lists them
 * (`AppHttpOptions.upgradeProtocols`, WebSocket by default). And the app's 101 must name a protocol that was
 * asked for: a 101 to something else is a switch nobody authorized.
 */
import { TOKEN_CHAR } from '../http1/bytes.js';

/** What an app port allows when its config names nothing. */
export const DEFAULT_UPGRADE_PROTOCOLS: readonly string[] = Object.freeze(['websocket']);

/** Never carried, whatever a port lists: HTTP/2 over cleartext (the `h2` token is not meant for Upgrade at all). */
const NEVER_UPGRADED: ReadonlySet<string> = new Set(['h2c', 'h2']);

/** Whether a protocol name may be configured as an upgrade target (a token, lower-case, not h2c). */
export function isConfigurableUpgradeProtocol(name: string): boolean {
  return isToken(name) && name === name.toLowerCase() && !NEVER_UPGRADED.has(name);
}

function isToken(text: string): boolean {
  if (text.length === 0) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff || TOKEN_CHAR[c] !== 1) return false;
  }
  return true;
}

/**
 * Lower-case protocol names of an `Upgrade` value (RFC 9110 7.8: `name[/version]`, comma-separated, empty
 * elements skipped); null when it names none or holds something that is not a protocol.
 */
export function upgradeProtocolNames(value: string | readonly string[] | undefined): string[] | null {
  if (value === undefined) return null;
  const text = typeof value === 'string' ? value : value.join(',');
  const names: string[] = [];
  for (const raw of text.split(',')) {
    const element = raw.trim();
    if (element === '') continue;
    const slash = element.indexOf('/');
    const name = slash < 0 ? element : element.slice(0, slash);
    if (!isToken(name) || (slash >= 0 && !isToken(element.slice(slash + 1)))) return null;
    names.push(name.toLowerCase());
  }
  return names.length === 0 ? null : names;
}

/**
 * Why an upgrade request must be refused, or undefined. `allowed` is the destination port's list; the
 * outbound, which does not know it, passes undefined and applies only what no port may allow.
 * `http2Settings`: the request carries an `HTTP2-Settings` field, which only an h2c upgrade sends.
 */
export function upgradeRequestProblem(upgrade: string | readonly string[] | undefined, http2Settings: boolean, allowed: readonly string[] | undefined): string | undefined {
  const names = upgradeProtocolNames(upgrade);
  if (names === null) return 'Upgrade names no valid protocol';
  if (http2Settings) return 'HTTP2-Settings: upgrades to h2c are not carried';
  for (const name of names) {
    if (NEVER_UPGRADED.has(name)) return `upgrades to ${name} are not carried`;
    if (allowed !== undefined && !allowed.includes(name)) return `upgrades to ${name} are not allowed on this port`;
  }
  return undefined;
}

/** Whether an app's 101 switches to one of the protocols that were requested (and so authorized). */
export function switchAccepted(requested: string | readonly string[] | undefined, responseUpgrade: string | readonly string[] | undefined): boolean {
  const asked = upgradeProtocolNames(requested);
  const chosen = upgradeProtocolNames(responseUpgrade);
  if (asked === null || chosen === null || chosen.length !== 1) return false;
  return asked.includes(chosen[0] as string);
}
