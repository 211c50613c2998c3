/**
 * Address ranges (CIDRs) and port ranges as the redirect rules take them.
 *
 * Both are parsed once at the edge into the exact text iptables-save prints back (network address,
 * canonical IPv6 compression, "from:to" ports), so installed rules can be compared line by line with
 * the generated ones. A CIDR with host bits set is refused rather than silently widened or narrowed.
 */
import { isIPv4, isIPv6 } from 'node:net';

export interface Cidr {
  readonly family: 4 | 6;
  /** Canonical text, e.g. "10.0.0.0/8", "fd00::/8", "192.0.2.7/32". */
  readonly text: string;
}

export interface PortRange {
  readonly from: number;
  readonly to: number;
  /** As iptables writes it: "22" or "8000:8100". */
  readonly text: string;
}

function ipv4Bytes(address: string): number[] {
  return address.split('.').map(Number);
}

/** The 16 bytes of an IPv6 address (including embedded IPv4 forms), from text that isIPv6 accepted. */
function ipv6Bytes(address: string): number[] {
  let text = address;
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  let v4Tail: number[] = [];
  if (tail.includes('.')) {
    v4Tail = ipv4Bytes(tail);
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const [head = '', rest] = text.split('::');
  const groups = (part: string): string[] => (part === '' ? [] : part.split(':'));
  const left = groups(head);
  const right = rest === undefined ? [] : groups(rest);
  const zeros = rest === undefined ? 0 : 8 - left.length - right.length;
  const all = [...left, ...Array<string>(zeros).fill('0'), ...right].map((g) => parseInt(g, 16));
  const bytes = all.flatMap((g) => [g >> 8, g & 0xff]);
  if (v4Tail.length === 4) bytes.splice(12, 4, ...v4Tail);
  return bytes;
}

/** RFC 5952 text (lower case, longest run of two or more zero groups compressed), as inet_ntop prints. */
function formatIpv6(bytes: readonly number[]): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength && j - i >= 2) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  // Like glibc's inet_ntop: IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) keep a dotted tail.
  if (bestStart === 0 && (bestLength === 6 || (bestLength === 5 && groups[5] === 0xffff))) {
    const v4 = bytes.slice(12, 16).join('.');
    return bestLength === 6 ? `::${v4}` : `::ffff:${v4}`;
  }
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

function hostBitsSet(bytes: readonly number[], prefix: number): boolean {
  for (let bit = prefix; bit < bytes.length * 8; bit++) {
    if (((bytes[bit >> 3] ?? 0) >> (7 - (bit & 7))) & 1) return true;
  }
  return false;
}

function masked(bytes: readonly number[], prefix: number): number[] {
  return bytes.map((byte, i) => {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    return byte & (0xff << (8 - keep)) & 0xff;
  });
}

/** Parses "10.0.0.0/8", "192.0.2.7" (= /32), "fd00::/8", "2001:db8::1" (= /128); throws a message on bad input. */
export function parseCidr(input: string): Cidr {
  const text = input.trim();
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const prefixText = slash < 0 ? undefined : text.slice(slash + 1);
  const family = isIPv4(address) ? 4 : isIPv6(address) ? 6 : 0;
  if (family === 0) throw new Error(`"${input}" is not an IPv4 or IPv6 address range (expected e.g. 10.0.0.0/8 or fd00::/8)`);
  const maxPrefix = family === 4 ? 32 : 128;
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) throw new Error(`"${input}": the prefix length must be a number 0-${maxPrefix}`);
  const prefix = prefixText === undefined ? maxPrefix : Number(prefixText);
  if (prefix > maxPrefix) throw new Error(`"${input}": the prefix length must be 0-${maxPrefix}`);
  const bytes = family === 4 ? ipv4Bytes(address) : ipv6Bytes(address);
  if (hostBitsSet(bytes, prefix)) {
    const network = masked(bytes, prefix);
    const suggestion = family === 4 ? network.join('.') : formatIpv6(network);
    throw new Error(`"${input}" has host bits set; did you mean ${suggestion}/${prefix}?`);
  }
  const canonical = family === 4 ? bytes.join('.') : formatIpv6(bytes);
  return Object.freeze({ family, text: `${canonical}/${prefix}` });
}

/** Parses "22", "8000-8100" or "8000:8100"; throws a message on bad input. */
export function parsePortRange(input: string | number): PortRange {
  const text = String(input).trim();
  const match = /^(\d{1,5})(?:[-:](\d{1,5}))?$/.exec(text);
  const from = Number(match?.[1]);
  const to = match?.[2] === undefined ? from : Number(match[2]);
  if (match === null || from < 1 || to > 65535 || to < from) {
    throw new Error(`"${text}" is not a port or port range (expected 1-65535, or from-to such as 8000-8100)`);
  }
  return Object.freeze({ from, to, text: from === to ? String(from) : `${from}:${to}` });
}
