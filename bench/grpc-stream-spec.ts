/**
 * What the gRPC streaming scenarios' server (bench/grpc-stream-server.ts) and load generator
 * (bench/grpc-stream-load.ts) agree on, in a file that loads no gRPC library, so the runner and the
 * scenario table can name the methods without importing @grpc/grpc-js.
 */
export const GRPC_SERVER_STREAM_PATH = '/bench.Stream/ServerStream';
export const GRPC_BIDI_PATH = '/bench.Stream/Bidi';
/** Payload bytes of every streamed message, both ways. */
export const GRPC_MESSAGE_BYTES = 512;
/** Messages of one server-streaming call: long enough to be a stream, short enough for many calls a run. */
export const GRPC_SERVER_STREAM_MESSAGES = 256;

export type GrpcStreamMode = 'server-stream' | 'bidi';
export const GRPC_STREAM_MODES: readonly GrpcStreamMode[] = Object.freeze(['server-stream', 'bidi'] as const);
