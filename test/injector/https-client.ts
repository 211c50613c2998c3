/**
 * A minimal HTTPS client for webhook tests that speaks as the API server does: POST JSON, verify the
 * serving certificate against a CA bundle and a service DNS name, and report the certificate it saw.
 */
import { request } from 'node:https';
import type { TLSSocket } from 'node:tls';

export interface HttpsReply {
  readonly status: number;
  readonly body: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly peerSerial: string;
}

export interface HttpsCall {
  readonly port: number;
  readonly ca: string;
  readonly path: string;
  readonly method?: string;
  readonly body?: string | Buffer;
  readonly headers?: Record<string, string>;
  /** Name checked against the certificate; the API server uses the Service's DNS name. */
  readonly servername?: string;
}

export function callWebhook(call: HttpsCall): Promise<HttpsReply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: call.port,
        path: call.path,
        method: call.method ?? 'POST',
        ca: call.ca,
        servername: call.servername ?? 'trellis-injector.trellis-system.svc',
        agent: false,
        headers: { 'content-type': 'application/json', ...(call.headers ?? {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        const peerSerial = (res.socket as TLSSocket).getPeerCertificate().serialNumber ?? '';
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers, peerSerial }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(call.body);
  });
}
