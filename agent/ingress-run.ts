/**
 * `trellis ingress run`, assembled: a zone ingress that joins its zone control plane with its own mesh
 * identity and serves the zone's public address.
 *
 *  1. identity: `spiffe://<td>/ns/<root-namespace>/sa/trellis-ingress` (api/zone-ingress.ts), issued with a
 *     join token (or its Deployment's service-account token) exactly as an agent's, kept in `--data-dir`,
 *     renewed at half-life (agent/identity-bootstrap.ts);
 *  2. the ingress port (proxy/ingress/ingress-server.ts), with an empty table until the first snapshot;
 *  3. the watch (agent/config-watch.ts): registers this instance as an endpoint of `trellis-ingress` at its
 *     *public* address (so the zone control plane publishes it upward as the zone's ingress: zone-link.ts),
 *     subscribes to every service of the mesh (`*`), and puts each snapshot's endpoints of this zone in the
 *     table. The control plane down: the last table stays in force.
 * Shutdown: deregister (the zone withdraws the address, callers move), GOAWAY, drain, close.
 */
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { ANY_UPSTREAM, CONTROL_PATHS, type Registration } from '../api/control-protocol.js';
import { controlRequest } from '../api/control-client.js';
import { INGRESS_SERVICE } from '../api/zone-ingress.js';
import { createAdminHttpServer, jsonReply, textReply } from '../common/admin-http.js';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { AgentMetrics } from './agent-metrics.js';
import { ConfigWatch } from './config-watch.js';
import { controlEndpointFor, createIdentityManager, obtainIdentity, type IdentityConfig } from './identity-bootstrap.js';
import type { HeldIdentity } from './identity-manager.js';
import { AgentStateDir } from './state-dir.js';
import { DEFAULT_LIMITS, type ProxyLimits } from '../proxy/core/limits.js';
import type { CallerRules } from '../proxy/ingress/caller-admission.js';
import { createIngressMetrics } from '../proxy/ingress/ingress-metrics.js';
import { IngressRoutes } from '../proxy/ingress/ingress-routes.js';
import { IngressServer } from '../proxy/ingress/ingress-server.js';
import { validateFederatedBundles } from '../proxy/core/federated-trust.js';
import type { WorkloadIdentity } from '../api/data-plane.js';

export const INGRESS_VERSION = '0.1.0';

export interface IngressConfig extends Omit<IdentityConfig, 'namespace' | 'service'> {
  /** Where the ingress port listens. */
  readonly listen: { readonly host: string; readonly port: number };
  /** Where other zones' sidecars reach it (`HOST:PORT`); registered with the zone control plane. */
  readonly publicAddress: { readonly host: string; readonly port: number };
  readonly rules: CallerRules;
  readonly admin: { readonly host: string; readonly port: number } | null;
  readonly dataDir: string | undefined;
  readonly limits?: Partial<ProxyLimits>;
}

export interface RunningIngress {
  readonly registry: Registry;
  addresses(): { readonly ingress: AddressInfo | undefined; readonly admin: AddressInfo | undefined };
  /** Whether the first table from the zone control plane is in force. */
  ready(): boolean;
  stop(graceMs: number): Promise<void>;
}

export async function startIngress(config: IngressConfig, log: Logger, signal?: AbortSignal): Promise<RunningIngress> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const stateDir = config.dataDir === undefined ? undefined : await AgentStateDir.open(config.dataDir);
  const instanceId = stateDir === undefined ? `${INGRESS_SERVICE}-${process.pid}-${Date.now().toString(36)}` : await stateDir.instanceId();
  const identityConfig: IdentityConfig = { ...config, namespace: config.rootNamespace, service: INGRESS_SERVICE };
  const caBundle = config.caFile === undefined ? undefined : await fs.readFile(config.caFile, 'utf8');
  const endpointFor = controlEndpointFor(identityConfig, caBundle);
  const late: { server?: IngressServer } = {};
  // Federated trust domains' roots (zones with their own PKI), from the snapshot: callers of those are verified against them.
  let federated: Readonly<Record<string, string>> = {};
  const withFederation = (held: WorkloadIdentity): WorkloadIdentity => ({ ...held, federatedBundles: federated });
  const identity = createIdentityManager({ config: identityConfig, caBundle, endpointFor, stateDir, metrics: new AgentMetrics(registry), log, onRenewed: (next) => late.server?.setIdentity(withFederation(next)) });
  const { held } = await obtainIdentity(identity, { config: identityConfig, stateDir, log }, signal);

  let zone: string | undefined;
  const routes = new IngressRoutes();
  const limits = { ...DEFAULT_LIMITS, ...config.limits };
  const server = new IngressServer({ trustDomain: held.trustDomain, identity: held, routes, rules: config.rules, limits, metrics: createIngressMetrics(registry), logger: log });
  late.server = server;
  const bound = await server.listen(config.listen.port, config.listen.host);
  log.info({ listen: `${bound.address}:${bound.port}`, public: `${config.publicAddress.host}:${config.publicAddress.port}` }, 'zone ingress listening');

  const registration = (): Registration => ({
    instanceId,
    address: config.publicAddress.host,
    // The public port: where other zones' sidecars dial this ingress (the registry's "tunnel port").
    tunnelPort: config.publicAddress.port === 0 ? bound.port : config.publicAddress.port,
    ports: [],
    healthy: true,
    upstreams: [{ service: ANY_UPSTREAM, namespace: ANY_UPSTREAM }],
    agentVersion: INGRESS_VERSION,
  });
  const watch = new ConfigWatch({
    endpoint: () => endpointFor(identity.current),
    clientCert: () => identity.current as HeldIdentity,
    registration,
    log,
    onConfig: (next) => {
      const bundles = next.snapshot.federatedBundles ?? {};
      if (JSON.stringify(bundles) !== JSON.stringify(federated)) {
        try {
          federated = validateFederatedBundles(bundles, held.trustDomain);
          server.setIdentity(withFederation(identity.current as HeldIdentity));
          log.info({ trustDomains: Object.keys(federated) }, 'ingress federated trust domains updated');
        } catch (err) {
          log.error({ err: describeError(err) }, 'the federated trust bundles from the zone control plane are invalid; the previous ones stay in force');
        }
      }
      zone = next.snapshot.zone;
      routes.set(next.snapshot.upstreams, zone);
      log.info({ zone, services: routes.size(), version: next.version }, 'ingress table updated');
    },
    onConnected: () => log.info({ control: config.controlUrl.host }, 'connected to the zone control plane'),
    onDisconnected: (reason) => log.warn({ reason }, 'lost the zone control plane; the last table stays in force'),
  });
  watch.start();
  identity.schedule();
  const admin = config.admin === null ? undefined : await startAdmin(config.admin, registry, () => ({ zone, ready: zone !== undefined, services: routes.size(), sessions: server.sessionCount(), connected: watch.connected }));

  let stopping: Promise<void> | undefined;
  return {
    registry,
    addresses: () => ({ ingress: server.address(), admin: admin?.address() as AddressInfo | undefined }),
    ready: () => zone !== undefined,
    stop(graceMs) {
      stopping ??= (async () => {
        identity.stop();
        try {
          await controlRequest(endpointFor(identity.current), { method: 'DELETE', path: CONTROL_PATHS.endpoint(instanceId), clientCert: identity.current as HeldIdentity, timeoutMs: 2_000 });
        } catch (err) {
          log.warn({ err: describeError(err) }, 'could not deregister (the control plane drops the endpoint when the watch closes)');
        }
        watch.stop();
        await server.close(graceMs);
        if (admin !== undefined) {
          const closed = new Promise((r) => admin.close(r));
          admin.closeAllConnections();
          await closed;
        }
      })();
      return stopping;
    },
  };
}

/** /healthz, /ready (503 until the first table), /metrics, /config. Loopback by default: it shows topology. */
async function startAdmin(at: { host: string; port: number }, registry: Registry, view: () => { zone: string | undefined; ready: boolean; services: number; sessions: number; connected: boolean }): Promise<Server> {
  const server = createAdminHttpServer({
    routes: {
      '/healthz': () => textReply(200, 'ok\n'),
      '/ready': () => {
        const v = view();
        return jsonReply(v.ready ? 200 : 503, v);
      },
      '/config': () => jsonReply(200, view()),
      '/metrics': async () => textReply(200, await registry.metrics(), registry.contentType),
    },
    methodNotAllowed: textReply(405, 'method not allowed\n'),
    notFound: (path) => textReply(404, `no such path: ${path.slice(0, 80)}\n`),
  });
  server.listen(at.port, at.host);
  await once(server, 'listening');
  return server;
}
