/**
 * The multi-zone demo's control planes, as processes on loopback: a global control plane, and per zone a
 * zone control plane joined to it with a single-use zone token, plus the zone's ingress (`trellis ingress
 * run`), through which other zones' sidecars reach this zone's services. Everything is started through
 * the DemoMesh, so its `close()` stops it all and removes the temp dir, also after a half-done start.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEMO_TRUST_DOMAIN, freePort, type ControlTarget, type DemoMesh, type DemoProcess } from './demo-mesh.js';

/** The identity a zone ingress joins its zone control plane with (as deploy/kubernetes/ingress does). */
const INGRESS_SERVICE = 'trellis-ingress';
const INGRESS_NAMESPACE = 'trellis-system';

export interface DemoZone extends ControlTarget {
  readonly name: string;
  readonly policyDir: string;
  readonly control: DemoProcess;
  readonly ingress: DemoProcess;
  /** host:port other zones dial for this zone's services. */
  readonly ingressAddress: string;
}

export class ZonesDemo {
  readonly globalDir: string;
  global: DemoProcess | undefined;

  constructor(private readonly mesh: DemoMesh) {
    this.globalDir = join(mesh.dir, 'global');
  }

  async startGlobal(): Promise<DemoProcess> {
    const policyDir = join(this.mesh.dir, 'global-policy');
    mkdirSync(policyDir);
    this.global = await this.mesh.spawn('global', ['control', 'run', '--mode', 'global', '--data-dir', this.globalDir, '--policy', policyDir,
      '--trust-domain', DEMO_TRUST_DOMAIN, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--zone-lease', '5s']);
    return this.global;
  }

  /** Zone NAME: its control plane joined to the global with POLICY (YAML) as its policy, and its ingress. */
  async startZone(name: string, policy: string): Promise<DemoZone> {
    if (this.global === undefined) throw new Error('start the global control plane first');
    const dataDir = join(this.mesh.dir, `zone-${name}`);
    const policyDir = join(this.mesh.dir, `zone-${name}-policy`);
    mkdirSync(policyDir);
    writeFileSync(join(policyDir, 'shop.yaml'), policy);
    const zoneToken = join(this.mesh.dir, `zone-${name}.token`);
    await this.mesh.runOnce(['zone', 'token', 'create', '--zone', name, '--data-dir', this.globalDir, '--output', zoneToken]);
    const control = await this.mesh.spawn(`control-${name}`, ['control', 'run', '--data-dir', dataDir, '--policy', policyDir, '--trust-domain', DEMO_TRUST_DOMAIN,
      '--zone', name, '--global', this.global.ready.api as string, '--global-ca', join(this.globalDir, 'trust-bundle.pem'), '--global-token-file', zoneToken,
      '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
    const target: ControlTarget = { api: control.ready.api as string, dataDir };
    const tokenFile = await this.mesh.tokenFile(target, INGRESS_SERVICE, INGRESS_NAMESPACE, `ingress-${name}`, 'ingress');
    // The public address is what the global hands other zones, so the port is fixed before the start.
    const ingressAddress = `127.0.0.1:${String(await freePort())}`;
    const ingress = await this.mesh.spawn(`ingress-${name}`, ['ingress', 'run', '--control', target.api, '--token-file', tokenFile, '--ca-file', join(dataDir, 'trust-bundle.pem'),
      '--listen', ingressAddress, '--public-address', ingressAddress, '--admin', '127.0.0.1:0', '--grace', '1s']);
    return { name, ...target, policyDir, control, ingress, ingressAddress };
  }
}
