#!/usr/bin/env node
/**
 * The streaming scenarios' backend: a real `@grpc/grpc-js` server (h2c) in its own process, started by
 * the runner beside nginx. nginx cannot stream gRPC messages, and a server nobody here wrote is what the
 * pairs must carry. Two methods, raw bytes as messages (no protobuf: the figures are the proxies' cost
 * per message, not a codec's):
 *
 * - `/bench.Stream/ServerStream`: one request in, `GRPC_SERVER_STREAM_MESSAGES` messages of
 *   `GRPC_MESSAGE_BYTES` out, written with backpressure (a full window waits for 'drain'), then OK.
 * - `/bench.Stream/Bidi`: every message in is echoed back; OK once the client ends its side.
 *
 *   node dist/bench/grpc-stream-server.js PORT
 */
import { Server, ServerCredentials, type ServerDuplexStream, type ServerWritableStream, type ServiceDefinition } from '@grpc/grpc-js';
import { isEntryPoint } from '../common/entry-point.js';
import { GRPC_BIDI_PATH, GRPC_MESSAGE_BYTES, GRPC_SERVER_STREAM_MESSAGES, GRPC_SERVER_STREAM_PATH } from './grpc-stream-spec.js';

const identity = (b: Buffer): Buffer => b;

/** Both methods, with bytes in and out as they are. */
export const STREAM_SERVICE: ServiceDefinition = {
  ServerStream: { path: GRPC_SERVER_STREAM_PATH, requestStream: false, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
  Bidi: { path: GRPC_BIDI_PATH, requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
};

/** One payload, shared by every write: the server allocates nothing per message. */
const PAYLOAD = Buffer.alloc(GRPC_MESSAGE_BYTES, 0x61);

function serverStream(call: ServerWritableStream<Buffer, Buffer>): void {
  let sent = 0;
  let done = false;
  const finish = (): void => {
    done = true;
  };
  call.on('cancelled', finish);
  call.on('error', finish);
  const pump = (): void => {
    while (!done && sent < GRPC_SERVER_STREAM_MESSAGES) {
      sent++;
      if (!call.write(PAYLOAD)) {
        call.once('drain', pump);
        return;
      }
    }
    if (!done) {
      done = true;
      call.end();
    }
  };
  pump();
}

function bidi(call: ServerDuplexStream<Buffer, Buffer>): void {
  call.on('data', (message: Buffer) => {
    // Echo with backpressure: a client that stops reading stops this stream's reading too.
    if (!call.write(message)) {
      call.pause();
      call.once('drain', () => call.resume());
    }
  });
  call.on('end', () => call.end());
  call.on('error', () => undefined);
}

export function startStreamServer(port: number, host = '127.0.0.1'): Promise<Server> {
  const server = new Server({ 'grpc.max_concurrent_streams': 1024 });
  server.addService(STREAM_SERVICE, {
    ServerStream: serverStream,
    Bidi: bidi,
  });
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, ServerCredentials.createInsecure(), (err) => (err === null ? resolve(server) : reject(err)));
  });
}

if (isEntryPoint(import.meta.url)) {
  const port = Number(process.argv[2]);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    process.stderr.write('usage: grpc-stream-server.js PORT\n');
    process.exit(2);
  }
  const server = await startStreamServer(port);
  const stop = (): void => server.tryShutdown(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
