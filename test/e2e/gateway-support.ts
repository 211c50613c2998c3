/**
 * What the gateway end-to-end files share: self-signed operator certificates and a gateway process on
 * loopback with an HTTP listener `web` and an HTTPS listener `tls` serving one certificate for
 * shop.example.com and one for *.example.com, chosen by SNI.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnTrellis, type Mesh, type Proc } from './mesh-support.js';

export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

export function selfSigned(dir: string, name: string, cn: string, san = cn): CertFiles {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${cn}`, '-addext', `subjectAltName=DNS:${san}`, '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { cert, key };
}

export interface Gateway {
  readonly proc: Proc;
  readonly http: number;
  readonly https: number;
  readonly configFile: string;
}

/** `trellis gateway run` as trellis-gateway/gateway in `mesh`; `rest` is the YAML after the listeners (routes and all). */
export async function startGateway(dir: string, mesh: Mesh, certs: { shop: CertFiles; wildcard: CertFiles }, rest: string): Promise<Gateway> {
  const token = await mesh.token('gateway', '10m', 'trellis-gateway');
  const configFile = join(dir, 'gateway.yaml');
  writeFileSync(configFile, `
name: gateway
namespace: trellis-gateway
mesh:
  control: ${mesh.api()}
  caFile: ${join(mesh.dataDir, 'trust-bundle.pem')}
  tokenFile: ${token}
admin: { address: 127.0.0.1, port: 0 }
listeners:
  - { name: web, port: 0, address: 127.0.0.1, protocol: http }
  - name: tls
    port: 0
    address: 127.0.0.1
    protocol: https
    tls:
      certificates:
        - { hosts: [shop.example.com], certificate: ${certs.shop.cert}, key: ${certs.shop.key} }
        - { hosts: ["*.example.com"], certificate: ${certs.wildcard.cert}, key: ${certs.wildcard.key} }
${rest}`);
  const proc = await spawnTrellis(['gateway', 'run', '--config', configFile, '--log-level', 'warn'], 30_000);
  const listeners = proc.ready.listeners as Record<string, number>;
  return { proc, http: listeners.web as number, https: listeners.tls as number, configFile };
}
