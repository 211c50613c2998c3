/**
 * A tiny HTTP/1.1 client for the HTTP path's tests: one request, the whole response collected (tests
 * only), on a given agent so keep-alive reuse can be observed.
 */
import { request, type Agent, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';

export interface TestResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  readonly trailers: Record<string, string | undefined>;
  readonly localPort: number | undefined;
}

export interface TestRequest {
  readonly port: number;
  readonly method?: string;
  readonly path?: string;
  readonly headers?: OutgoingHttpHeaders;
  /** Written in this many pieces (chunked when no content-length is given). */
  readonly body?: string | readonly string[];
  readonly agent?: Agent | false;
}

export function send(options: TestRequest): Promise<TestResponse> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port: options.port,
      method: options.method ?? 'GET',
      path: options.path ?? '/',
      headers: options.headers,
      agent: options.agent ?? false,
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (chunk: Buffer) => parts.push(chunk));
      res.on('error', reject);
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(parts).toString('utf8'),
          trailers: res.trailers,
          localPort: req.socket?.localPort,
        }),
      );
    });
    const body = options.body;
    if (body === undefined) req.end();
    else if (typeof body === 'string') req.end(body);
    else {
      for (const piece of body) req.write(piece);
      req.end();
    }
  });
}
