#!/usr/bin/env node
/**
 * The zone ingress of the ingress pairs (bench/pairs/ingress.ts), as its own process: the real
 * IngressServer (proxy/ingress/) with a static table instead of a zone control plane, so the bench needs
 * none. `node dist/bench/ingress-proc.js CONFIG.json`; CONFIG names the identity files, the port, the zone
 * and the endpoints. Stops on SIGTERM.
 */
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import type { UpstreamService } from '../api/data-plane.js';
import { isEntryPoint } from '../common/entry-point.js';
import { silentLogger } from '../common/log.js';
import { DEFAULT_LIMITS } from '../proxy/core/limits.js';
import { createIngressMetrics } from '../proxy/ingress/ingress-metrics.js';
import { IngressRoutes } from '../proxy/ingress/ingress-routes.js';
import { IngressServer } from '../proxy/ingress/ingress-server.js';

export interface BenchIngressConfig {
  readonly trustDomain: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly bundleFile: string;
  readonly port: number;
  readonly zone: string;
  readonly upstreams: readonly UpstreamService[];
}

export async function runBenchIngress(config: BenchIngressConfig): Promise<IngressServer> {
  const routes = new IngressRoutes();
  routes.set(config.upstreams, config.zone);
  const identity = { certChainPem: readFileSync(config.certFile, 'utf8'), keyPem: readFileSync(config.keyFile, 'utf8'), trustBundlePem: readFileSync(config.bundleFile, 'utf8') };
  const server = new IngressServer({ trustDomain: config.trustDomain, identity, routes, rules: { admitZones: '*', refuseIdentities: [] }, limits: DEFAULT_LIMITS, metrics: createIngressMetrics(new Registry()), logger: silentLogger() });
  await server.listen(config.port, '127.0.0.1');
  return server;
}

if (isEntryPoint(import.meta.url)) {
  const server = await runBenchIngress(JSON.parse(readFileSync(process.argv[2] as string, 'utf8')) as BenchIngressConfig);
  process.once('SIGTERM', () => void server.close(0).then(() => process.exit(0)));
}
