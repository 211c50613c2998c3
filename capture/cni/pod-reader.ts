/**
 * The plugin's one API call, GET of a pod, over node:https without the Kubernetes client library: the
 * runtime runs the plugin once per pod sandbox, and loading @kubernetes/client-node costs more than a
 * second of CPU (6 to 8 s on a loaded 2-core machine), which every pod start would wait for. The
 * kubeconfig is the one `trellis cni install` writes (or any with a server, a CA and a bearer token):
 * certificate verification is never turned off, and a response larger than 4 MiB is cut off.
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { parse } from 'yaml';
import { TRELLIS_VERSION } from '../../common/version.js';
import type { PodLookup, PodMarks } from './plugin.js';

const MAX_BODY_BYTES = 4 * 1024 * 1024;

export interface PodApiAccess {
  readonly server: URL;
  readonly caPem: string | undefined;
  readonly token: string;
}

interface Named<T> {
  readonly name: string;
  readonly cluster?: T;
  readonly user?: T;
  readonly context?: T;
}

/** The current context's server, CA and token from a kubeconfig (YAML or JSON). */
export function readKubeconfig(path: string): PodApiAccess {
  const doc = parse(readFileSync(path, 'utf8')) as {
    clusters?: Named<Record<string, string | boolean>>[];
    users?: Named<Record<string, string>>[];
    contexts?: Named<{ cluster: string; user: string }>[];
    'current-context'?: string;
  };
  const context = (doc.contexts ?? []).find((c) => c.name === doc['current-context'])?.context;
  if (context === undefined) throw new Error(`${path}: no current context`);
  const cluster = (doc.clusters ?? []).find((c) => c.name === context.cluster)?.cluster;
  const user = (doc.users ?? []).find((u) => u.name === context.user)?.user;
  if (cluster === undefined || typeof cluster.server !== 'string') throw new Error(`${path}: the current context has no cluster server`);
  if (cluster['insecure-skip-tls-verify'] === true) throw new Error(`${path}: insecure-skip-tls-verify is not accepted`);
  const caData = cluster['certificate-authority-data'];
  const caFile = cluster['certificate-authority'];
  const caPem = typeof caData === 'string' ? Buffer.from(caData, 'base64').toString('utf8') : typeof caFile === 'string' ? readFileSync(caFile, 'utf8') : undefined;
  const token = user?.token ?? (user?.tokenFile === undefined ? undefined : readFileSync(user.tokenFile, 'utf8').trim());
  if (token === undefined || token === '') throw new Error(`${path}: the current user has no token`);
  const server = new URL(cluster.server);
  if (server.protocol !== 'https:') throw new Error(`${path}: the server must be https://`);
  return { server, caPem, token };
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function getJson(access: PodApiAccess, path: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, access.server),
      { method: 'GET', headers: { authorization: `Bearer ${access.token}`, accept: 'application/json', 'user-agent': `trellis-cni/${TRELLIS_VERSION} (trellis.dev)` }, ...(access.caPem === undefined ? {} : { ca: access.caPem }), timeout: timeoutMs },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_BODY_BYTES) {
            req.destroy(new Error(`the API server's answer is larger than ${MAX_BODY_BYTES} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== 200) {
            let message = text.slice(0, 200);
            try {
              message = String((JSON.parse(text) as { message?: unknown }).message ?? message);
            } catch {
              // not a Status object: keep the text
            }
            reject(new HttpError(res.statusCode ?? 0, `HTTP ${res.statusCode}: ${message}`));
            return;
          }
          try {
            resolve(JSON.parse(text));
          } catch {
            reject(new Error('the API server answered with something that is not JSON'));
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`the API server did not answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

export function httpsPodLookup(kubeconfigPath: string, timeoutMs: number): PodLookup {
  let access: PodApiAccess | undefined;
  return {
    async get(namespace: string, name: string): Promise<PodMarks | null> {
      access ??= readKubeconfig(kubeconfigPath);
      try {
        const pod = (await getJson(access, `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`, timeoutMs)) as { metadata?: { uid?: string; annotations?: Record<string, string> } };
        return { uid: pod.metadata?.uid ?? '', annotations: pod.metadata?.annotations ?? {} };
      } catch (err) {
        if (err instanceof HttpError && err.status === 404) return null;
        throw err;
      }
    },
  };
}
