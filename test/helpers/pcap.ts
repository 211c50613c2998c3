/**
 * A small pcap reader for tests that check what crossed a wire (tcpdump -w FILE): TCP packets over IPv4 on
 * Ethernet, each direction of a connection reassembled in capture order, and a walk over TLS records that
 * says whether bytes are TLS records throughout (the proof that nothing crossed in clear).
 */
import { readFileSync } from 'node:fs';

export interface Packet {
  readonly src: string;
  readonly dst: string;
  readonly srcPort: number;
  readonly dstPort: number;
  /** The TCP sequence number and flags (0x02 SYN), for reassembly across retransmissions. */
  readonly seq: number;
  readonly flags: number;
  readonly payload: Buffer;
}

/** TCP packets of a pcap file (Ethernet, IPv4), with their payloads. */
export function readPcap(file: string): Packet[] {
  const buf = readFileSync(file);
  const magic = buf.readUInt32LE(0);
  if (magic !== 0xa1b2c3d4 && magic !== 0xa1b23c4d) throw new Error(`${file}: not a little-endian pcap file (magic ${magic.toString(16)})`);
  if (buf.readUInt32LE(20) !== 1) throw new Error(`${file}: link type ${buf.readUInt32LE(20)} is not Ethernet`);
  const packets: Packet[] = [];
  for (let off = 24; off + 16 <= buf.length; ) {
    const length = buf.readUInt32LE(off + 8);
    const frame = buf.subarray(off + 16, off + 16 + length);
    off += 16 + length;
    if (frame.length < 34 || frame.readUInt16BE(12) !== 0x0800) continue;
    const ip = frame.subarray(14);
    if (ip[9] !== 6) continue;
    const ihl = ((ip[0] as number) & 0x0f) * 4;
    const total = ip.readUInt16BE(2);
    const tcp = ip.subarray(ihl, total);
    const dataOffset = ((tcp[12] as number) >> 4) * 4;
    packets.push({
      src: [...ip.subarray(12, 16)].join('.'),
      dst: [...ip.subarray(16, 20)].join('.'),
      srcPort: tcp.readUInt16BE(0),
      dstPort: tcp.readUInt16BE(2),
      seq: tcp.readUInt32BE(4),
      flags: tcp[13] as number,
      payload: tcp.subarray(dataOffset),
    });
  }
  return packets;
}

const SYN = 0x02;

/**
 * The payload of each direction of each TCP connection, by sequence number: a retransmission (a peer cut
 * off resends what the wire already carried) adds nothing twice. `gap` when bytes are missing from the
 * capture (then the bytes after it are not a continuation).
 */
export function tcpStreams(packets: readonly Packet[]): { key: string; bytes: Buffer; gap: boolean }[] {
  const streams = new Map<string, { next: number; parts: Buffer[]; gap: boolean }>();
  for (const p of packets) {
    const key = `${p.src}:${p.srcPort}>${p.dst}:${p.dstPort}`;
    let stream = streams.get(key);
    if (stream === undefined) {
      // The first byte follows the SYN's own number; without the SYN the capture began mid-connection.
      stream = { next: (p.flags & SYN) !== 0 ? (p.seq + 1) >>> 0 : p.seq, parts: [], gap: false };
      streams.set(key, stream);
    }
    if (p.payload.length === 0) continue;
    // Sequence space wraps at 2^32: the signed 32-bit difference says before or after.
    const offset = (p.seq - stream.next) | 0;
    if (offset > 0) stream.gap = true;
    if (offset + p.payload.length <= 0) continue;
    const fresh = offset >= 0 ? p.payload : p.payload.subarray(-offset);
    stream.parts.push(fresh);
    stream.next = (stream.next + (offset > 0 ? offset : 0) + fresh.length) >>> 0;
  }
  return [...streams].map(([key, s]) => ({ key, bytes: Buffer.concat(s.parts), gap: s.gap }));
}

/** Walks TLS records (type 20-23, version 3.x, length); `garbage` when the bytes are not records. A record cut by the capture's end is fine. */
export function tlsRecords(bytes: Buffer): { types: number[]; garbage: boolean } {
  const types: number[] = [];
  let off = 0;
  while (off + 5 <= bytes.length) {
    const type = bytes[off] as number;
    if (type < 20 || type > 23 || bytes[off + 1] !== 3) return { types, garbage: true };
    types.push(type);
    off += 5 + bytes.readUInt16BE(off + 3);
  }
  return { types, garbage: false };
}

