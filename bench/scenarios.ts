/**
 * What the benchmark measures. Each scenario names the port kind it goes through (a `tcp` port tunnels
 * bytes; an `http` port routes each request) and the load that drives it. Connection counts and the
 * fixed rate are constants here, not options, so that two runs of `npm run bench` are comparable.
 */
import { GRPC_PATH, LARGE_BODY_BYTES, LARGE_PATH, SMALL_PATH } from './backend.js';
import type { PortKind } from './pair.js';
import { GRPC_BIDI_PATH, GRPC_MESSAGE_BYTES, GRPC_SERVER_STREAM_MESSAGES, GRPC_SERVER_STREAM_PATH, type GrpcStreamMode } from './grpc-stream-spec.js';

export type ScenarioLoad =
  | { readonly tool: 'wrk'; readonly connections: number; readonly connectionClose: boolean }
  | { readonly tool: 'h2load'; readonly clients: number; readonly ratePerClient: number }
  /** h2load over h2c, as fast as it goes: `clients` connections × `streams` concurrent streams each; gRPC-framed POSTs with `grpc`. */
  | { readonly tool: 'h2load-mux'; readonly clients: number; readonly streams: number; readonly grpc: boolean }
  /** The grpc-js load generator (bench/grpc-stream-load.ts): `connections` channels × `streams` concurrent calls each. */
  | { readonly tool: 'grpc-stream'; readonly mode: GrpcStreamMode; readonly connections: number; readonly streams: number };

export interface Scenario {
  readonly id: string;
  readonly title: string;
  readonly port: PortKind;
  readonly path: string;
  /** Body bytes of one response, to check that what arrived was whole. */
  readonly bodyBytes: number | undefined;
  readonly load: ScenarioLoad;
  /** Fixed-rate scenarios compare latency, not throughput (every pair is asked for the same rate). */
  readonly fixedRate: boolean;
}

/** Concurrent connections of the throughput scenarios: enough to keep every pair busy, not a flood. */
export const THROUGHPUT_CONNECTIONS = 32;
/** The "moderate" fixed rate of the latency scenario: 8 clients × 250 requests/s = 2,000 requests/s. */
export const LATENCY_CLIENTS = 8;
export const LATENCY_RATE_PER_CLIENT = 250;
/** 1 MiB transfers: a few concurrent downloads, as bulk traffic is. */
export const LARGE_CONNECTIONS = 4;
/** HTTP/2 multiplexing: 8 connections × 32 streams (h2load `-c 8 -m 32`), the figure. */
export const H2_CLIENTS = 8;
export const H2_STREAMS = 32;
/**
 * gRPC streaming: 4 channels × 8 concurrent calls. Fewer than h2load's 256 streams: the grpc-js client and
 * server are Node processes on the same 2 cores as the pairs, and 32 calls already keep every pair busy.
 */
export const GRPC_STREAM_CONNECTIONS = 4;
export const GRPC_STREAM_CALLS = 8;

export const SCENARIOS: readonly Scenario[] = Object.freeze([
  {
    id: 'keepalive-tcp',
    title: 'keep-alive HTTP/1.1 through a tcp port',
    port: 'tcp',
    path: SMALL_PATH,
    bodyBytes: undefined,
    load: { tool: 'wrk', connections: THROUGHPUT_CONNECTIONS, connectionClose: false },
    fixedRate: false,
  },
  {
    id: 'close-tcp',
    title: 'a new connection per request (Connection: close) through a tcp port',
    port: 'tcp',
    path: SMALL_PATH,
    bodyBytes: undefined,
    load: { tool: 'wrk', connections: THROUGHPUT_CONNECTIONS, connectionClose: true },
    fixedRate: false,
  },
  {
    id: 'keepalive-http',
    title: 'keep-alive HTTP/1.1 through an http port',
    port: 'http',
    path: SMALL_PATH,
    bodyBytes: undefined,
    load: { tool: 'wrk', connections: THROUGHPUT_CONNECTIONS, connectionClose: false },
    fixedRate: false,
  },
  {
    id: 'close-http',
    title: 'a new connection per request (Connection: close) through an http port',
    port: 'http',
    path: SMALL_PATH,
    bodyBytes: undefined,
    load: { tool: 'wrk', connections: THROUGHPUT_CONNECTIONS, connectionClose: true },
    fixedRate: false,
  },
  {
    id: 'latency-tcp',
    title: `latency at a fixed ${LATENCY_CLIENTS * LATENCY_RATE_PER_CLIENT} requests/s through a tcp port`,
    port: 'tcp',
    path: SMALL_PATH,
    bodyBytes: undefined,
    load: { tool: 'h2load', clients: LATENCY_CLIENTS, ratePerClient: LATENCY_RATE_PER_CLIENT },
    fixedRate: true,
  },
  {
    id: 'latency-http',
    title: `latency at a fixed ${LATENCY_CLIENTS * LATENCY_RATE_PER_CLIENT} requests/s through an http port`,
    port: 'http',
    path: SMALL_PATH,
    bodyBytes: undefined,
    load: { tool: 'h2load', clients: LATENCY_CLIENTS, ratePerClient: LATENCY_RATE_PER_CLIENT },
    fixedRate: true,
  },
  {
    id: '1mib-tcp',
    title: '1 MiB responses through a tcp port',
    port: 'tcp',
    path: LARGE_PATH,
    bodyBytes: LARGE_BODY_BYTES,
    load: { tool: 'wrk', connections: LARGE_CONNECTIONS, connectionClose: false },
    fixedRate: false,
  },
  {
    id: '1mib-http',
    title: '1 MiB responses through an http port',
    port: 'http',
    path: LARGE_PATH,
    bodyBytes: LARGE_BODY_BYTES,
    load: { tool: 'wrk', connections: LARGE_CONNECTIONS, connectionClose: false },
    fixedRate: false,
  },
  {
    id: 'h2-mux-http2',
    title: `h2c, ${H2_CLIENTS} connections × ${H2_STREAMS} streams (h2load -c ${H2_CLIENTS} -m ${H2_STREAMS}) through an http2 port`,
    port: 'http2',
    path: SMALL_PATH,
    bodyBytes: undefined,
    load: { tool: 'h2load-mux', clients: H2_CLIENTS, streams: H2_STREAMS, grpc: false },
    fixedRate: false,
  },
  {
    id: 'grpc-unary-http2',
    title: `gRPC-framed unary calls, ${H2_CLIENTS} connections × ${H2_STREAMS} streams, through an http2 port`,
    port: 'http2',
    path: GRPC_PATH,
    bodyBytes: undefined,
    load: { tool: 'h2load-mux', clients: H2_CLIENTS, streams: H2_STREAMS, grpc: true },
    fixedRate: false,
  },
  {
    id: 'grpc-server-stream',
    title: `gRPC server streaming (grpc-js), ${GRPC_STREAM_CONNECTIONS} channels × ${GRPC_STREAM_CALLS} calls, ${GRPC_SERVER_STREAM_MESSAGES} × ${GRPC_MESSAGE_BYTES}-byte messages per call, through a grpc port; req/s = messages/s, latency per call`,
    port: 'grpc',
    path: GRPC_SERVER_STREAM_PATH,
    bodyBytes: undefined,
    load: { tool: 'grpc-stream', mode: 'server-stream', connections: GRPC_STREAM_CONNECTIONS, streams: GRPC_STREAM_CALLS },
    fixedRate: false,
  },
  {
    id: 'grpc-bidi-stream',
    title: `gRPC bidirectional streaming (grpc-js), ${GRPC_STREAM_CONNECTIONS} channels × ${GRPC_STREAM_CALLS} calls, ${GRPC_MESSAGE_BYTES}-byte ping-pong messages, through a grpc port; req/s = messages/s, latency per message round trip`,
    port: 'grpc',
    path: GRPC_BIDI_PATH,
    bodyBytes: undefined,
    load: { tool: 'grpc-stream', mode: 'bidi', connections: GRPC_STREAM_CONNECTIONS, streams: GRPC_STREAM_CALLS },
    fixedRate: false,
  },
] satisfies Scenario[]);

/** The five scenarios of the issue, plus the http-port variants that matter for `http` ports. */
export const DEFAULT_SCENARIO_IDS: readonly string[] = Object.freeze(SCENARIOS.map((s) => s.id));

export function scenarioById(id: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.id === id);
}
