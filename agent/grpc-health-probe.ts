/**
 * The kubelet's gRPC probe, run by the agent: one `grpc.health.v1.Health/Check` call over cleartext
 * HTTP/2 (h2c, as the kubelet speaks it), framed by hand so the agent needs no gRPC library. The request
 * is a `HealthCheckRequest { string service = 1; }`; the answer a `HealthCheckResponse { ServingStatus
 * status = 1; }`. Healthy means grpc-status 0 and status SERVING, as for the kubelet.
 */
import { connect, constants } from 'node:http2';

export interface ProbeResult {
  readonly ok: boolean;
  readonly detail: string;
}

export const GRPC_HEALTH_PATH = '/grpc.health.v1.Health/Check';
/** A HealthCheckResponse is a few bytes; anything far larger is not one. */
const MAX_RESPONSE_BYTES = 16 * 1024;
const SERVING_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'] as const;

function varint(value: number): Buffer {
  const bytes: number[] = [];
  let v = value;
  while (v > 0x7f) {
    bytes.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  bytes.push(v);
  return Buffer.from(bytes);
}

/** The gRPC message frame (uncompressed flag, 4-byte big-endian length) around a HealthCheckRequest. */
export function healthCheckRequestFrame(service: string): Buffer {
  const name = Buffer.from(service, 'utf8');
  // proto3 leaves a field with its default value (the empty string) out.
  const message = name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a]), varint(name.length), name]);
  const header = Buffer.alloc(5);
  header.writeUInt8(0, 0);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

function readVarint(buf: Buffer, at: number): { value: number; next: number } | undefined {
  let value = 0;
  for (let shift = 0, i = at; i < buf.length && shift < 35; shift += 7, i++) {
    const byte = buf[i] as number;
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return { value, next: i + 1 };
  }
  return undefined;
}

/**
 * The `status` of a framed HealthCheckResponse (0, UNKNOWN, when the field is absent), or a string saying
 * why the bytes are not one. Unknown fields are skipped, as protobuf readers must.
 */
export function parseHealthCheckResponse(body: Buffer): number | string {
  if (body.length < 5) return 'a response shorter than one gRPC message frame';
  if (body[0] !== 0) return 'a compressed response (the request offered no compression)';
  const length = body.readUInt32BE(1);
  if (body.length !== 5 + length) return `a frame of ${length} bytes with ${body.length - 5} bytes of data`;
  const message = body.subarray(5);
  let status = 0;
  let at = 0;
  while (at < message.length) {
    const tag = readVarint(message, at);
    if (tag === undefined) return 'a malformed protobuf message';
    at = tag.next;
    const wire = tag.value % 8;
    const field = Math.floor(tag.value / 8);
    if (wire === 0) {
      const v = readVarint(message, at);
      if (v === undefined) return 'a malformed protobuf message';
      if (field === 1) status = v.value;
      at = v.next;
    } else if (wire === 2) {
      const len = readVarint(message, at);
      if (len === undefined || len.next + len.value > message.length) return 'a malformed protobuf message';
      at = len.next + len.value;
    } else if (wire === 1 || wire === 5) {
      at += wire === 1 ? 8 : 4;
    } else {
      return `a protobuf wire type ${wire} this message cannot hold`;
    }
  }
  if (at !== message.length) return 'a truncated protobuf message';
  return status;
}

export function grpcHealthProbe(host: string, port: number, service: string, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const target = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    const what = `gRPC health check of ${target}${service === '' ? '' : ` (service "${service}")`}`;
    let settled = false;
    const session = connect(`http://${target}`, { maxHeaderListPairs: 64, maxSessionMemory: 1 });
    const finish = (result: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish({ ok: false, detail: `${what}: no answer within ${timeoutMs} ms` }), timeoutMs);
    session.on('error', (err) => finish({ ok: false, detail: `${what}: ${err.message}` }));
    const stream = session.request({
      [constants.HTTP2_HEADER_METHOD]: 'POST',
      [constants.HTTP2_HEADER_PATH]: GRPC_HEALTH_PATH,
      [constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
      te: 'trailers',
      'user-agent': 'kube-probe/trellis-agent',
    });
    const chunks: Buffer[] = [];
    let received = 0;
    let grpcStatus: string | undefined;
    let grpcMessage: string | undefined;
    const noteStatus = (headers: Record<string, unknown>): void => {
      if (typeof headers['grpc-status'] === 'string') grpcStatus = headers['grpc-status'];
      if (typeof headers['grpc-message'] === 'string') grpcMessage = decodeURIComponent(headers['grpc-message']);
    };
    stream.on('response', (headers) => {
      const status = headers[constants.HTTP2_HEADER_STATUS];
      if (Number(status) !== 200) finish({ ok: false, detail: `${what}: HTTP status ${String(status)}` });
      // A trailers-only answer (an error, usually) carries grpc-status in the headers.
      noteStatus(headers);
    });
    stream.on('trailers', (trailers) => noteStatus(trailers));
    stream.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received > MAX_RESPONSE_BYTES) finish({ ok: false, detail: `${what}: response larger than ${MAX_RESPONSE_BYTES} bytes` });
      else chunks.push(chunk);
    });
    stream.on('error', (err) => finish({ ok: false, detail: `${what}: ${err.message}` }));
    stream.on('end', () => {
      if (grpcStatus === undefined) return finish({ ok: false, detail: `${what}: the answer carried no grpc-status` });
      if (grpcStatus !== '0') return finish({ ok: false, detail: `${what}: grpc-status ${grpcStatus}${grpcMessage === undefined ? '' : ` (${grpcMessage})`}` });
      const status = parseHealthCheckResponse(Buffer.concat(chunks));
      if (typeof status === 'string') return finish({ ok: false, detail: `${what}: ${status}` });
      const name = SERVING_STATUS[status] ?? `status ${status}`;
      finish({ ok: status === 1, detail: `${what}: ${name}` });
    });
    stream.end(healthCheckRequestFrame(service));
  });
}
