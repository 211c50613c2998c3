/**
 * A fake Kubernetes API server on loopback, over real HTTPS, that answers the few calls the injector makes
 * with the shapes the real one uses: `/version`, GET and JSON-Patch PATCH of a MutatingWebhookConfiguration
 * (with `test` operations enforced and 422 on failure, 415 for another patch type), POST of core/v1 Events,
 * and `Status` objects for errors (401, 404, 415, 422, 500). Every request is recorded for assertions.
 */
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import jsonpatch from 'fast-json-patch';
import { KubeConfig } from '@kubernetes/client-node';
import type { ServingMaterial } from '../../injector/serving-certificate-issuer.js';

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly contentType: string | undefined;
  readonly authorization: string | undefined;
  readonly body: unknown;
  readonly userAgent: string | undefined;
  /** The query string's parameters (e.g. fieldManager). */
  readonly query: Readonly<Record<string, string>>;
}

export interface FakeKubeApi {
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** MutatingWebhookConfigurations by name; edit freely between calls. */
  readonly webhookConfigurations: Map<string, Record<string, unknown>>;
  readonly events: Record<string, unknown>[];
  /** Namespaces by name (GET /api/v1/namespaces/NAME answers them). */
  readonly namespaces: Map<string, Record<string, unknown>>;
  /** Any other object, by its exact API path (GET only), e.g. /apis/apps/v1/namespaces/x/deployments/y. */
  readonly objects: Map<string, Record<string, unknown>>;
  /** Pods by "namespace/name": GET one, list with a spec.nodeName field selector, DELETE with a uid precondition. */
  readonly pods: Map<string, Record<string, unknown>>;
  /** Makes the next N requests fail with 500. */
  failNext(count: number): void;
  version: Record<string, string>;
  kubeConfig(): KubeConfig;
  close(): Promise<void>;
}

export const FAKE_TOKEN = 'fake-service-account-token';

function status(code: number, reason: string, message: string, details?: Record<string, unknown>): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details === undefined ? {} : { details }), code };
}

let resourceVersion = 1000;

export async function startFakeKubeApi(material: ServingMaterial): Promise<FakeKubeApi> {
  const requests: RecordedRequest[] = [];
  const webhookConfigurations = new Map<string, Record<string, unknown>>();
  const events: Record<string, unknown>[] = [];
  const namespaces = new Map<string, Record<string, unknown>>();
  const pods = new Map<string, Record<string, unknown>>();
  const objects = new Map<string, Record<string, unknown>>();
  let failures = 0;
  const state = {
    version: {
      major: '1',
      minor: '30',
      emulationMajor: '1',
      emulationMinor: '30',
      minCompatibilityMajor: '1',
      minCompatibilityMinor: '29',
      gitVersion: 'v1.30.4',
      gitCommit: 'a51b3b711150f57ffc1f526a640ec058514ed596',
      gitTreeState: 'clean',
      buildDate: '2024-08-14T19:02:46Z',
      goVersion: 'go1.22.5',
      compiler: 'gc',
      platform: 'linux/amd64',
    } as Record<string, string>,
  };

  const server: Server = createServer({ cert: material.certChainPem, key: material.keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const url = new URL(req.url ?? '/', 'https://fake');
      let body: unknown = undefined;
      try {
        body = raw === '' ? undefined : JSON.parse(raw);
      } catch {
        body = raw;
      }
      requests.push({ method: req.method ?? '', path: url.pathname, contentType: req.headers['content-type'], authorization: req.headers.authorization, body, userAgent: req.headers['user-agent'], query: Object.fromEntries(url.searchParams) });
      const reply = (code: number, payload: unknown): void => {
        const text = JSON.stringify(payload);
        res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      };
      if (failures > 0) {
        failures--;
        reply(500, status(500, 'InternalError', 'Internal error occurred: etcdserver: request timed out'));
        return;
      }
      if (url.pathname === '/version' && req.method === 'GET') {
        reply(200, state.version);
        return;
      }
      if (req.headers.authorization !== `Bearer ${FAKE_TOKEN}`) {
        reply(401, status(401, 'Unauthorized', 'Unauthorized'));
        return;
      }
      const mwc = /^\/apis\/admissionregistration\.k8s\.io\/v1\/mutatingwebhookconfigurations\/([^/]+)$/.exec(url.pathname);
      if (mwc !== null) {
        const name = decodeURIComponent(mwc[1] as string);
        const current = webhookConfigurations.get(name);
        if (current === undefined) {
          reply(404, status(404, 'NotFound', `mutatingwebhookconfigurations.admissionregistration.k8s.io "${name}" not found`, { name, group: 'admissionregistration.k8s.io', kind: 'mutatingwebhookconfigurations' }));
          return;
        }
        if (req.method === 'GET') {
          reply(200, current);
          return;
        }
        if (req.method === 'PATCH') {
          if (req.headers['content-type'] !== 'application/json-patch+json') {
            reply(415, status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`));
            return;
          }
          try {
            const next = jsonpatch.applyPatch(structuredClone(current), body as jsonpatch.Operation[], true, false).newDocument;
            const meta = next.metadata as Record<string, unknown>;
            meta.resourceVersion = String(++resourceVersion);
            webhookConfigurations.set(name, next);
            reply(200, next);
          } catch (err) {
            reply(422, status(422, 'Invalid', `the server rejected our request due to an error in our request: ${(err as Error).message}`));
          }
          return;
        }
      }
      const object = objects.get(url.pathname);
      if (object !== undefined && req.method === 'GET') {
        reply(200, object);
        return;
      }
      if (url.pathname === '/api/v1/namespaces' && req.method === 'GET') {
        const selector = /^([^=]+)=(.*)$/.exec(url.searchParams.get('labelSelector') ?? '');
        const items = [...namespaces.values()].filter((n) => selector === null || (n.metadata as { labels?: Record<string, string> }).labels?.[selector[1] as string] === selector[2]);
        reply(200, { kind: 'NamespaceList', apiVersion: 'v1', metadata: { resourceVersion: String(++resourceVersion) }, items });
        return;
      }
      const pod = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(url.pathname);
      if (pod !== null) {
        const key = `${decodeURIComponent(pod[1] as string)}/${decodeURIComponent(pod[2] as string)}`;
        const found = pods.get(key);
        if (found === undefined) {
          reply(404, status(404, 'NotFound', `pods "${pod[2]}" not found`, { name: pod[2], kind: 'pods' }));
          return;
        }
        if (req.method === 'GET') {
          reply(200, found);
          return;
        }
        if (req.method === 'DELETE') {
          const wanted = (body as { preconditions?: { uid?: string } } | undefined)?.preconditions?.uid;
          const uid = (found.metadata as { uid?: string }).uid;
          if (wanted !== undefined && wanted !== uid) {
            reply(409, status(409, 'Conflict', `Precondition failed: UID in precondition: ${wanted}, UID in object meta: ${uid}`));
            return;
          }
          pods.delete(key);
          reply(200, found);
          return;
        }
      }
      if (url.pathname === '/api/v1/pods' && req.method === 'GET') {
        const selector = /^spec\.nodeName=(.*)$/.exec(url.searchParams.get('fieldSelector') ?? '');
        const items = [...pods.values()].filter((p) => selector === null || (p.spec as { nodeName?: string }).nodeName === selector[1]);
        reply(200, { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: String(++resourceVersion) }, items });
        return;
      }
      const ns = /^\/api\/v1\/namespaces\/([^/]+)$/.exec(url.pathname);
      if (ns !== null && req.method === 'GET') {
        const name = decodeURIComponent(ns[1] as string);
        const found = namespaces.get(name);
        if (found === undefined) reply(404, status(404, 'NotFound', `namespaces "${name}" not found`, { name, kind: 'namespaces' }));
        else reply(200, found);
        return;
      }
      const ev = /^\/api\/v1\/namespaces\/([^/]+)\/events$/.exec(url.pathname);
      if (ev !== null && req.method === 'POST') {
        const event = structuredClone(body) as Record<string, unknown>;
        const meta = (event.metadata ?? {}) as Record<string, unknown>;
        meta.name = `${String(meta.generateName ?? 'event.')}${(++resourceVersion).toString(16)}`;
        meta.uid = `00000000-0000-4000-8000-${String(resourceVersion).padStart(12, '0')}`;
        meta.resourceVersion = String(resourceVersion);
        meta.creationTimestamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
        meta.namespace = ev[1];
        event.metadata = meta;
        events.push(event);
        reply(201, event);
        return;
      }
      reply(404, status(404, 'NotFound', 'the server could not find the requested resource'));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    requests,
    webhookConfigurations,
    namespaces,
    pods,
    objects,
    events,
    failNext(count: number) {
      failures = count;
    },
    get version() {
      return state.version;
    },
    set version(value: Record<string, string>) {
      state.version = value;
    },
    kubeConfig(): KubeConfig {
      const kc = new KubeConfig();
      kc.loadFromClusterAndUser(
        { name: 'fake', server: url, caData: Buffer.from(material.caBundlePem).toString('base64'), skipTLSVerify: false },
        { name: 'injector', token: FAKE_TOKEN },
      );
      return kc;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
