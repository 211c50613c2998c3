/**
 * gRPC over the mesh: which requests are gRPC calls, their deadline, and the mesh's own failures as gRPC
 * statuses (a gRPC client cannot read an HTTP 403 or 503: it reports "Received HTTP status code 403" as
 * UNKNOWN or UNAVAILABLE, with no reason).
 *
 * A failure the mesh answers on a gRPC call is a Trailers-Only response (one HEADERS frame with END_STREAM:
 * `:status 200`, `content-type: application/grpc`, `grpc-status`, `grpc-message`), as the gRPC HTTP/2
 * protocol describes; the stable `trellis-error` code and correlation id ride along as extra fields.
 * Statuses follow the gRPC project's HTTP-to-gRPC mapping (403 → PERMISSION_DENIED; 502, 503, 504 →
 * UNAVAILABLE; 400 → INTERNAL), except that a passed `grpc-timeout` is DEADLINE_EXCEEDED.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import { ERROR_HEADER, HTTP_FAILURES, type HttpFailure } from '../http/errors.js';
import { CORRELATION_HEADER } from '../core/tunnel-protocol.js';
import { REQUEST_ID_HEADER } from '../http/header-rules.js';

export const GRPC_STATUS = Object.freeze({
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
});

/** `application/grpc` and its subtypes (`application/grpc+proto`); gRPC-Web (`application/grpc-web`) is not. */
export function isGrpcContentType(value: string | string[] | undefined): boolean {
  if (typeof value !== 'string' || !value.startsWith('application/grpc')) return false;
  const next = value.charCodeAt(16);
  return Number.isNaN(next) || next === 0x2b /* + */ || next === 0x3b /* ; */;
}

export function isGrpcRequest(headers: IncomingHttpHeaders): boolean {
  return isGrpcContentType(headers['content-type']);
}

/** The longest deadline we keep a timer for (about 24 days: setTimeout's own limit). */
const MAX_TIMER_MS = 2 ** 31 - 1;
const UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 };

/**
 * `grpc-timeout` (1 to 8 digits and a unit: H M S m u n) in milliseconds, capped at setTimeout's limit;
 * undefined when absent, null when malformed (the call is then refused: a client that sent a deadline
 * must not find it silently ignored).
 */
export function parseGrpcTimeout(value: string | string[] | undefined): number | undefined | null {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') return null;
  const match = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (match === null) return null;
  const ms = Number(match[1]) * (UNIT_MS[match[2] as string] as number);
  return Math.min(MAX_TIMER_MS, Math.ceil(ms));
}

/** `grpc-timeout` for what is left of a deadline, in the unit that keeps it within 8 digits. */
export function formatGrpcTimeout(ms: number): string {
  const left = Math.max(0, Math.floor(ms));
  return left < 100_000_000 ? `${left}m` : `${Math.min(99_999_999, Math.floor(left / 1000))}S`;
}

export function grpcStatusOfFailure(failure: HttpFailure): number {
  if (failure.code === HTTP_FAILURES.deadlineExceeded.code) return GRPC_STATUS.DEADLINE_EXCEEDED;
  switch (failure.status) {
    case 401:
      return GRPC_STATUS.UNAUTHENTICATED;
    case 403:
      return GRPC_STATUS.PERMISSION_DENIED;
    case 404:
      return GRPC_STATUS.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GRPC_STATUS.UNAVAILABLE;
    default:
      return GRPC_STATUS.INTERNAL;
  }
}

/**
 * grpc-message is percent-encoded (gRPC HTTP/2 protocol): bytes outside printable ASCII and `%` itself.
 * Messages here are the mesh's own one-liners, so this is cheap.
 */
export function encodeGrpcMessage(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The fields of a gRPC status, for trailers or a Trailers-Only response. */
export function grpcStatusFields(status: number, message: string): OutgoingHttpHeaders {
  return { 'grpc-status': String(status), 'grpc-message': encodeGrpcMessage(message) };
}

/** A Trailers-Only response for a failure the mesh answers on a gRPC call (send with endStream). */
export function grpcFailureHeaders(failure: HttpFailure, correlationId: string, extra?: OutgoingHttpHeaders): OutgoingHttpHeaders {
  return {
    ':status': 200,
    'content-type': 'application/grpc',
    ...grpcStatusFields(grpcStatusOfFailure(failure), `${failure.message} [${failure.code}] (correlation id ${correlationId})`),
    [ERROR_HEADER]: failure.code,
    [CORRELATION_HEADER]: correlationId,
    [REQUEST_ID_HEADER]: correlationId,
    ...extra,
  };
}
