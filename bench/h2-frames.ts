/**
 * Raw HTTP/2 frames (RFC 9113 §4, HPACK literals from RFC 7541 §6.2.2) for the abuse benchmark and the
 * tunnel abuse tests: node:http2 refuses to send what a hostile peer sends (a DATA frame on stream 0, a
 * header block past every limit, thousands of HEADERS + RST_STREAM pairs in one write), so those are
 * written by hand on a real mTLS socket. Nothing here is used by the proxy.
 */
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export const FRAME = Object.freeze({ DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, CONTINUATION: 9 });
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const CANCEL = 0x8;
const MAX_FRAME_PAYLOAD = 16_384;

export const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.alloc(9 + payload.length);
  out.writeUIntBE(payload.length, 0, 3);
  out[3] = type;
  out[4] = flags;
  out.writeUInt32BE(streamId & 0x7fffffff, 5);
  payload.copy(out, 9);
  return out;
}

/** The client preface and an empty SETTINGS frame: what opens a session. */
export function openingBytes(): Buffer {
  return Buffer.concat([CLIENT_PREFACE, frame(FRAME.SETTINGS, 0, 0)]);
}

/** HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInteger(value: number, prefixBits: number, firstByteFlags: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [firstByteFlags | value];
  const out = [firstByteFlags | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

/** "Literal header field without indexing, indexed name" for a static-table name index. */
function literal(nameIndex: number, value: string): Buffer {
  const bytes = Buffer.from(value, 'latin1');
  return Buffer.concat([Buffer.from(hpackInteger(nameIndex, 4, 0)), Buffer.from(hpackInteger(bytes.length, 7, 0)), bytes]);
}

/** `:method CONNECT`, `:authority <authority>` (static indexes 2 and 1). */
export function connectHeaderBlock(authority: string): Buffer {
  return Buffer.concat([literal(2, 'CONNECT'), literal(1, authority)]);
}

/** HEADERS (a CONNECT) and at once RST_STREAM(CANCEL), `count` times: the CVE-2023-44487 pattern. */
export function rapidResetBurst(firstStreamId: number, count: number, authority: string): Buffer {
  const block = connectHeaderBlock(authority);
  const rst = Buffer.alloc(4);
  rst.writeUInt32BE(CANCEL);
  const frames: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const id = firstStreamId + 2 * i;
    frames.push(frame(FRAME.HEADERS, END_HEADERS, id, block), frame(FRAME.RST_STREAM, 0, id, rst));
  }
  return Buffer.concat(frames);
}

/** A header block with one literal value of `valueBytes`, as HEADERS + CONTINUATION frames. */
export function oversizedHeaderFrames(streamId: number, authority: string, valueBytes: number): Buffer {
  const name = Buffer.from('x-big', 'latin1');
  const big = Buffer.concat([Buffer.from([0x00]), Buffer.from(hpackInteger(name.length, 7, 0)), name, Buffer.from(hpackInteger(valueBytes, 7, 0)), Buffer.alloc(valueBytes, 0x61)]);
  const block = Buffer.concat([connectHeaderBlock(authority), big]);
  const frames: Buffer[] = [];
  for (let offset = 0; offset < block.length; offset += MAX_FRAME_PAYLOAD) {
    const last = offset + MAX_FRAME_PAYLOAD >= block.length;
    frames.push(frame(offset === 0 ? FRAME.HEADERS : FRAME.CONTINUATION, (last ? END_HEADERS : 0) | (offset === 0 ? END_STREAM : 0), streamId, block.subarray(offset, offset + MAX_FRAME_PAYLOAD)));
  }
  return Buffer.concat(frames);
}

/** A DATA frame on stream 0: a connection error (PROTOCOL_ERROR) that nghttp2 answers with GOAWAY by itself. */
export function protocolErrorFrame(): Buffer {
  return frame(FRAME.DATA, 0, 0, Buffer.from('x'));
}

export interface ParsedFrame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

/** Collects the frames a peer sends; `goawayCode()` is the error code of the first GOAWAY, if any. */
export class FrameReader {
  readonly frames: ParsedFrame[] = [];
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= 9) {
      const length = this.pending.readUIntBE(0, 3);
      if (this.pending.length < 9 + length) break;
      this.frames.push({ type: this.pending[3] as number, flags: this.pending[4] as number, streamId: this.pending.readUInt32BE(5) & 0x7fffffff, payload: this.pending.subarray(9, 9 + length) });
      this.pending = this.pending.subarray(9 + length);
    }
  }

  goawayCode(): number | undefined {
    const goaway = this.frames.find((f) => f.type === FRAME.GOAWAY);
    return goaway === undefined || goaway.payload.length < 8 ? undefined : goaway.payload.readUInt32BE(4);
  }
}

export interface RawSessionOptions {
  readonly host: string;
  readonly port: number;
  /** Source address (any of 127/8 on loopback). */
  readonly localAddress?: string;
  readonly certChainPem: string;
  readonly keyPem: string;
  readonly caPem: string;
}

/**
 * An mTLS connection that negotiated h2 and sent the client preface, with every frame the server sends
 * collected; resolves once the server's first SETTINGS arrived (the session exists on its side).
 */
export function openRawSession(options: RawSessionOptions): Promise<{ socket: TLSSocket; reader: FrameReader; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const reader = new FrameReader();
    const tcp = netConnect({ host: options.host, port: options.port, ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }) });
    tcp.on('error', () => undefined);
    const socket = tlsConnect({
      socket: tcp,
      cert: options.certChainPem,
      key: options.keyPem,
      ca: options.caPem,
      ALPNProtocols: ['h2'],
      checkServerIdentity: () => undefined,
    });
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.on('error', (err) => reject(err));
    socket.once('secureConnect', () => socket.write(openingBytes()));
    socket.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      if (reader.frames.some((f) => f.type === FRAME.SETTINGS)) resolve({ socket, reader, closed });
    });
    socket.once('close', () => reject(new Error('closed before the server sent SETTINGS')));
  });
}
