/**
 * The benchmark's certificates, made by the real ca/ library exactly as the mesh makes them: a root, a
 * zone intermediate, and an ECDSA P-256 SPIFFE leaf for each side. Both the HAProxy pair and the Trellis
 * pair use these same files, so neither gets cheaper cryptography than the other.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createRootCa } from '../ca/authority.js';
import { workloadId } from '../ca/spiffe-id.js';
import { INGRESS_SERVICE } from '../api/zone-ingress.js';
import { DEFAULT_ROOT_NAMESPACE } from '../policy/types.js';

export const BENCH_TRUST_DOMAIN = 'bench.trellis.local';
export const BENCH_NAMESPACE = 'bench';
/** The caller's service (the load generator's sidecar) and the destination's (the backend's sidecar). */
export const CLIENT_SERVICE = 'loadgen';
export const SERVER_SERVICE = 'backend';

export interface BenchIdentityFiles {
  readonly service: string;
  readonly spiffeId: string;
  /** Leaf then intermediate, PEM. */
  readonly certFile: string;
  /** PKCS#8 private key, PEM, mode 0600. */
  readonly keyFile: string;
  /** Chain then key in one file, as HAProxy's `crt` takes it. */
  readonly combinedFile: string;
}

export interface BenchPki {
  readonly trustDomain: string;
  readonly namespace: string;
  /** The root, PEM: the trust bundle of both sides. */
  readonly bundleFile: string;
  readonly client: BenchIdentityFiles;
  readonly server: BenchIdentityFiles;
  /** The zone ingress's identity (`trellis-system/trellis-ingress`), for the ingress pairs. */
  readonly ingress: BenchIdentityFiles;
}

export async function writeBenchPki(dir: string): Promise<BenchPki> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const root = await createRootCa({ trustDomain: BENCH_TRUST_DOMAIN, commonName: 'Trellis benchmark root' });
  const intermediate = await root.createIntermediate({ name: 'bench-zone' });
  const bundleFile = join(dir, 'bundle.pem');
  await writeFile(bundleFile, root.bundle.toPem(), { mode: 0o644 });

  const issue = async (service: string, namespace = BENCH_NAMESPACE): Promise<BenchIdentityFiles> => {
    const id = workloadId(BENCH_TRUST_DOMAIN, namespace, service);
    const issued = await intermediate.issueWorkload(id);
    const files: BenchIdentityFiles = {
      service,
      spiffeId: id.toString(),
      certFile: join(dir, `${service}.crt.pem`),
      keyFile: join(dir, `${service}.key.pem`),
      combinedFile: join(dir, `${service}.combined.pem`),
    };
    await writeFile(files.certFile, issued.certChainPem, { mode: 0o644 });
    await writeFile(files.keyFile, issued.keyPem, { mode: 0o600 });
    await writeFile(files.combinedFile, issued.certChainPem + issued.keyPem, { mode: 0o600 });
    return Object.freeze(files);
  };

  return Object.freeze({
    trustDomain: BENCH_TRUST_DOMAIN,
    namespace: BENCH_NAMESPACE,
    bundleFile,
    client: await issue(CLIENT_SERVICE),
    server: await issue(SERVER_SERVICE),
    ingress: await issue(INGRESS_SERVICE, DEFAULT_ROOT_NAMESPACE),
  });
}
