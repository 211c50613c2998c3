/**
 * The TLS server name (SNI) that an outbound sidecar sends when it opens a tunnel session. It names the
 * destination so that a zone ingress can route the connection without decrypting it, and it is versioned
 * so the format can change without ambiguity:
 *
 *   <service>.<namespace>.p<port>.<zone>.v1.trellis
 *
 * e.g. `payments.shop.p8080.eu-west.v1.trellis`. Every part is a lowercase RFC 1123 label (a-z, 0-9, '-',
 * starting and ending with a letter or digit, at most 63 characters), so the whole is a valid DNS name of
 * at most 209 characters (the DNS limit is 253), and decoding is exact: six labels, fixed positions.
 * Uppercase is refused rather than folded, because SNI is case-insensitive and folding would not round-trip.
 *
 * A caller of another (federated) trust domain puts one more label in front, naming its own trust domain:
 *
 *   t<26 base32 characters>.<service>.<namespace>.p<port>.<zone>.v1.trellis
 *
 * The destination's tunnel server picks the roots it verifies the caller's certificate against from this
 * label (that trust domain's roots alone), before the handshake goes on; see proxy/core/federated-trust.ts.
 * The label is a digest of the trust domain (`trustDomainLabel`), because a trust domain may hold `.`, `_`
 * and 255 characters, none of which fit one DNS label; the server maps it back through the trust domains it
 * federates with. Callers of the destination's own trust domain send no such label (the name is unchanged).
 */
import { createHash } from 'node:crypto';
import { TrellisError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';

export const SNI_VERSION = 'v1';
export const SNI_SUFFIX = 'trellis';
export const DNS_NAME_MAX_LENGTH = 253;
export const DNS_LABEL_MAX_LENGTH = 63;

export interface SniDestination {
  readonly service: string;
  readonly namespace: string;
  /** The destination port the session was opened for (1-65535). */
  readonly port: number;
  /** The destination's zone. */
  readonly zone: string;
  /** The caller's trust domain label (`trustDomainLabel`), sent only by a caller of another trust domain. */
  readonly callerTrustDomain?: string;
}

const TRUST_DOMAIN_LABEL = /^t[a-z2-7]{26}$/;
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** `t` and the first 130 bits of SHA-256(trust domain) in lowercase base32: one DNS label, 27 characters. */
export function trustDomainLabel(trustDomain: string): string {
  const digest = createHash('sha256').update(trustDomain, 'utf8').digest();
  let out = 't';
  let bits = 0;
  let value = 0;
  for (const byte of digest) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < 27) {
      bits -= 5;
      out += BASE32[(value >>> bits) & 31];
    }
    if (out.length === 27) break;
    value &= (1 << bits) - 1;
  }
  return out;
}

const LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;

function checkLabel(value: string, what: string): void {
  if (value.length === 0) throw unencodable(`${what} is empty`);
  if (value.length > DNS_LABEL_MAX_LENGTH) throw unencodable(`${what} "${value}" is ${value.length} characters; a DNS label holds at most ${DNS_LABEL_MAX_LENGTH}`);
  if (!LABEL.test(value)) {
    throw unencodable(`${what} "${value}" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`);
  }
}

function unencodable(message: string): TrellisError {
  return new TrellisError(CODE.SNI_UNENCODABLE, `cannot name the destination in SNI: ${message}`, { side: 'input' });
}

export function encodeSni(destination: SniDestination): string {
  checkLabel(destination.service, 'service');
  checkLabel(destination.namespace, 'namespace');
  checkLabel(destination.zone, 'zone');
  if (!Number.isInteger(destination.port) || destination.port < 1 || destination.port > 65535) {
    throw unencodable(`port ${destination.port} is not between 1 and 65535`);
  }
  const caller = destination.callerTrustDomain;
  if (caller !== undefined && !TRUST_DOMAIN_LABEL.test(caller)) throw unencodable(`caller trust domain label "${caller}" is not one trustDomainLabel makes`);
  const name = `${caller === undefined ? '' : `${caller}.`}${destination.service}.${destination.namespace}.p${destination.port}.${destination.zone}.${SNI_VERSION}.${SNI_SUFFIX}`;
  // Unreachable with four labels of at most 63 characters and one of 27, kept so a future format cannot silently overflow.
  if (name.length > DNS_NAME_MAX_LENGTH) throw unencodable(`the name would be ${name.length} characters; at most ${DNS_NAME_MAX_LENGTH}`);
  return name;
}

/** Decodes a server name; throws TRELLIS_SNI_INVALID when it is not a Trellis name of a known version. */
export function decodeSni(serverName: string): SniDestination {
  const all = serverName.split('.');
  // Seven labels: the first names the caller's trust domain, and must look like one.
  const caller = all.length === 7 && TRUST_DOMAIN_LABEL.test(all[0] as string) ? (all[0] as string) : undefined;
  const labels = caller === undefined ? all : all.slice(1);
  if (labels.length !== 6 || labels[5] !== SNI_SUFFIX) {
    throw new TrellisError(CODE.SNI_INVALID, `"${truncate(serverName)}" is not a Trellis server name (expected [t<trust domain label>.]<service>.<namespace>.p<port>.<zone>.${SNI_VERSION}.${SNI_SUFFIX})`, { side: 'downstream' });
  }
  const [service, namespace, portLabel, zone, version] = labels as [string, string, string, string, string, string];
  if (version !== SNI_VERSION) {
    throw new TrellisError(CODE.SNI_VERSION, `server name "${truncate(serverName)}" has version "${truncate(version)}"; this build understands ${SNI_VERSION}`, { side: 'downstream' });
  }
  const port = /^p[1-9][0-9]{0,4}$/.test(portLabel) ? Number(portLabel.slice(1)) : NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new TrellisError(CODE.SNI_INVALID, `server name "${truncate(serverName)}": "${truncate(portLabel)}" is not a port label (p1 to p65535)`, { side: 'downstream' });
  }
  for (const [value, what] of [[service, 'service'], [namespace, 'namespace'], [zone, 'zone']] as const) {
    if (value.length === 0 || value.length > DNS_LABEL_MAX_LENGTH || !LABEL.test(value)) {
      throw new TrellisError(CODE.SNI_INVALID, `server name "${truncate(serverName)}": ${what} "${truncate(value)}" is not a DNS label`, { side: 'downstream' });
    }
  }
  return caller === undefined ? { service, namespace, port, zone } : { service, namespace, port, zone, callerTrustDomain: caller };
}

/**
 * The server name of a caller's outer session to a zone ingress (proxy/outbound/tunnel-client/
 * ingress-transport.ts): `ingress.trellis`, and for a caller of another trust domain than the ingress's,
 * `t<label>.ingress.trellis`, so the ingress verifies it against that trust domain's roots alone, as a
 * tunnel port does with the label in front of a destination's name.
 */
export const INGRESS_SNI = 'ingress.trellis';

export function ingressSni(callerTrustDomain?: string): string {
  if (callerTrustDomain !== undefined && !TRUST_DOMAIN_LABEL.test(callerTrustDomain)) throw unencodable(`caller trust domain label "${callerTrustDomain}" is not one trustDomainLabel makes`);
  return callerTrustDomain === undefined ? INGRESS_SNI : `${callerTrustDomain}.${INGRESS_SNI}`;
}

/**
 * The caller's trust domain label in any server name a Trellis caller sends (a destination's, or an
 * ingress's); undefined when it names none or is not a Trellis name (such a peer is verified against our
 * own roots).
 */
export function callerTrustDomainLabel(serverName: string): string | undefined {
  if (serverName.endsWith(`.${INGRESS_SNI}`)) {
    const label = serverName.slice(0, -INGRESS_SNI.length - 1);
    return TRUST_DOMAIN_LABEL.test(label) ? label : undefined;
  }
  try {
    return decodeSni(serverName).callerTrustDomain;
  } catch {
    return undefined;
  }
}

// Server names come from the network: never echo an unbounded amount of one into a log line.
function truncate(text: string): string {
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}
