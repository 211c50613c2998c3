/**
 * The running injector: the HTTPS webhook, its serving certificate (loaded, renewed, swapped in place),
 * the caBundle kept in step, and the admin port. Start order matters: the certificate first (no
 * certificate, no server), then the caBundle (the API server must trust the certificate before it calls),
 * then the listeners. Readiness waits for the first successful caBundle sync when one is configured.
 */
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../common/log.js';
import { AdminServer } from './admin-server.js';
import type { WebhookCaBundleSync } from './ca-bundle-sync.js';
import type { InjectorConfig } from './config.js';
import type { EventSink } from './events.js';
import type { InjectorMetrics } from './metrics.js';
import type { ServingCertificateSource, ServingMaterial } from './serving-certificate.js';
import { WebhookServer, type WebhookLimits } from './webhook-server.js';
import { UNKNOWN_NAMESPACES, type NamespaceDirectory } from './namespace-facts.js';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export interface InjectorOptions {
  readonly config: InjectorConfig;
  /** When true, the agents' trust bundle follows the serving certificate's CA bundle (issued mode). */
  readonly trustBundleFromServing: boolean;
  readonly source: ServingCertificateSource;
  readonly caBundleSync?: WebhookCaBundleSync;
  readonly events: EventSink;
  readonly metrics: InjectorMetrics;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly listen: ListenAddress;
  readonly admin?: ListenAddress;
  readonly limits?: Partial<WebhookLimits>;
  /** Namespace labels (Pod Security level, capture mode); without API access every namespace is privileged. */
  readonly namespaces?: NamespaceDirectory;
}

export interface RunningInjector {
  readonly webhook: AddressInfo;
  readonly admin: AddressInfo | undefined;
  /** The config in force (its trust bundle may have followed a certificate renewal). */
  config(): InjectorConfig;
  stop(): Promise<void>;
}

export async function startInjector(options: InjectorOptions): Promise<RunningInjector> {
  let config = options.config;
  // Set once the first certificate is loaded; a renewal that lands before then has nothing to swap.
  const serving: { server?: WebhookServer } = {};
  let caBundleSynced = options.caBundleSync === undefined;
  const onMaterial = async (material: ServingMaterial): Promise<void> => {
    if (options.trustBundleFromServing) config = Object.freeze({ ...config, trustBundlePem: material.caBundlePem });
    // Trust first, then serve: during a CA change the bundle holds old and new roots, so both work.
    if (options.caBundleSync !== undefined) {
      const result = await options.caBundleSync.syncInBackground(material.caBundlePem);
      if (result !== undefined) caBundleSynced = true;
    }
    serving.server?.updateCertificate(material);
  };
  const first = await options.source.start(onMaterial);
  if (options.trustBundleFromServing) config = Object.freeze({ ...config, trustBundlePem: first.caBundlePem });
  if (options.caBundleSync !== undefined) {
    options.caBundleSync.start();
    const result = await options.caBundleSync.syncInBackground(first.caBundlePem);
    caBundleSynced = result !== undefined;
  }
  const server = new WebhookServer({ material: first, config: () => config, namespaces: options.namespaces ?? UNKNOWN_NAMESPACES, metrics: options.metrics, events: options.events, logger: options.logger, ...(options.limits ? { limits: options.limits } : {}) });
  serving.server = server;
  const webhook = await server.listen(options.listen.port, options.listen.host);
  let adminServer: AdminServer | undefined;
  let admin: AddressInfo | undefined;
  if (options.admin !== undefined) {
    adminServer = new AdminServer({
      registry: options.registry,
      notReadyReason: () => (caBundleSynced ? null : 'the webhook configuration does not trust the serving certificate yet (caBundle sync failing)'),
    });
    admin = await adminServer.listen(options.admin.port, options.admin.host);
  }
  options.logger.info({ port: webhook.port, admin: admin?.port, layout: config.kubernetesVersion }, 'injector listening');
  return {
    webhook,
    admin,
    config: () => config,
    async stop() {
      options.source.stop();
      options.caBundleSync?.stop();
      const closing = server.close();
      // In-flight reviews finish within the request timeout; idle keep-alive connections close now.
      const grace = setTimeout(() => server.closeAllConnections(), 5_000);
      await closing;
      clearTimeout(grace);
      await adminServer?.close();
    },
  };
}
