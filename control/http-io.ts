/**
 * Small HTTP helpers shared by the control plane's API and admin listeners: bounded JSON bodies,
 * JSON replies, and one place that turns a TrellisError into the status code a peer sees.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CONTROL_PROTOCOL_VERSION, PROTOCOL_HEADER, type ErrorBody } from '../api/control-protocol.js';
import { TrellisError, describeError, isTrellisError } from '../common/errors.js';
import { CODE, errorCodeInfo, httpStatusOf } from '../common/error-codes.js';

/** A refusal of one control API request; its status is the registry's unless this reply needs another. */
export class HttpError extends TrellisError {
  readonly status: number;

  constructor(code: string, message: string, status: number = errorCodeInfo(code)?.status ?? 500) {
    super(code, message, { side: status >= 500 ? 'internal' : 'downstream' });
    this.status = status;
  }
}

export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > maxBytes) throw new HttpError(CODE.CONTROL_BODY_TOO_LARGE, `request body is larger than ${maxBytes} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new HttpError(CODE.CONTROL_BODY_TOO_LARGE, `request body is larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) throw new HttpError(CODE.CONTROL_BAD_REQUEST, 'a JSON body is required');
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new HttpError(CODE.CONTROL_BAD_REQUEST, 'the body is not valid JSON');
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    [PROTOCOL_HEADER]: String(CONTROL_PROTOCOL_VERSION),
  });
  res.end(text);
}

/** The registry's status of the error's code (common/error-codes.ts), or the one this reply chose; 500 for anything unexpected (details only in logs). */
export function statusOf(err: unknown): number {
  if (err instanceof HttpError) return err.status;
  return httpStatusOf(err);
}

export function sendError(res: ServerResponse, err: unknown): void {
  const status = statusOf(err);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const code = isTrellisError(err) ? err.code : CODE.CONTROL_INTERNAL;
  const message = status === 500 ? 'internal error (see the control plane log)' : describeError(err);
  sendJson(res, status, { error: { code, message } } satisfies ErrorBody);
}

export function bearerOf(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}
