/**
 * A loopback mesh for the HTTP/2 and gRPC tests: `instances` destination sidecars (`echo.shop`), each in
 * front of a real `@grpc/grpc-js` server (or any h2c/HTTP server the test passes), and one caller sidecar
 * (`web.shop`) with a listener for the service port. Real TLS 1.3 mTLS between the sidecars, port 0 everywhere.
 */
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { PortProtocol } from '../../../api/data-plane.js';
import { silentLogger } from '../../../common/log.js';
import { compilePolicy } from '../../../policy/compiled-policy.js';
import { parsePolicyFiles } from '../../../policy/validator.js';
import { compileTraffic, parseTrafficFiles } from '../../../policy/traffic/index.js';
import { createSidecar, type Sidecar, type SidecarConfig } from '../../../proxy/sidecar.js';
import { createTestPki, type TestPki } from '../../helpers/pki.js';
import type { Logger } from 'pino';

const PROTO = fileURLToPath(new URL('./echo.proto', import.meta.url));

export interface EchoMsg {
  text?: string;
  data?: Buffer;
  instance?: string;
  count?: number;
  delayMs?: number;
}

type Ctor = new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => grpc.Client;
export interface EchoPackage {
  readonly Echo: Ctor & { service: grpc.ServiceDefinition };
  readonly Admin: Ctor & { service: grpc.ServiceDefinition };
}

export function loadEcho(): EchoPackage {
  const def = protoLoader.loadSync(PROTO, { keepCase: false, longs: Number, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { trellis: { test: EchoPackage } };
  return pkg.trellis.test;
}

/** The echo service of one instance: every answer names the instance. */
export function echoImplementation(instance: string): grpc.UntypedServiceImplementation {
  return {
    Unary(call: grpc.ServerUnaryCall<EchoMsg, EchoMsg>, callback: grpc.sendUnaryData<EchoMsg>): void {
      const meta = new grpc.Metadata();
      meta.set('x-instance', instance);
      call.sendMetadata(meta);
      const reply = (): void => {
        const trailer = new grpc.Metadata();
        trailer.set('x-trailer', `from-${instance}`);
        const seen = call.metadata.get('x-caller')[0];
        callback(null, { text: `${call.request.text ?? ''}${seen === undefined ? '' : ` caller=${String(seen)}`}`, data: call.request.data, instance, count: (call.request.data ?? Buffer.alloc(0)).length }, trailer);
      };
      if ((call.request.delayMs ?? 0) > 0) setTimeout(reply, call.request.delayMs);
      else reply();
    },
    ServerStream(call: grpc.ServerWritableStream<EchoMsg, EchoMsg>): void {
      const total = call.request.count ?? 1;
      let i = 0;
      const next = (): void => {
        if (call.cancelled) return;
        if (i >= total) {
          call.end();
          return;
        }
        call.write({ text: `${call.request.text ?? ''}#${i}`, instance, count: i, data: call.request.data });
        i += 1;
        if ((call.request.delayMs ?? 0) > 0) setTimeout(next, call.request.delayMs);
        else setImmediate(next);
      };
      next();
    },
    ClientStream(call: grpc.ServerReadableStream<EchoMsg, EchoMsg>, callback: grpc.sendUnaryData<EchoMsg>): void {
      let count = 0;
      let bytes = 0;
      call.on('data', (m: EchoMsg) => {
        count += 1;
        bytes += m.data?.length ?? 0;
      });
      call.on('end', () => callback(null, { text: `got ${count} messages, ${bytes} bytes`, instance, count }));
    },
    Bidi(call: grpc.ServerDuplexStream<EchoMsg, EchoMsg>): void {
      call.on('data', (m: EchoMsg) => call.write({ text: `echo ${m.text ?? ''}`, instance, count: m.count }));
      call.on('end', () => call.end());
    },
  };
}

export async function startEchoServer(instance: string, echo: EchoPackage): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024, 'grpc.max_send_message_length': 64 * 1024 * 1024 });
  server.addService(echo.Echo.service, echoImplementation(instance));
  server.addService(echo.Admin.service, {
    Reset(_call: grpc.ServerUnaryCall<EchoMsg, EchoMsg>, callback: grpc.sendUnaryData<EchoMsg>): void {
      callback(null, { text: 'reset', instance });
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err === null ? resolve(p) : reject(err))));
  return { server, port };
}

export interface Instance {
  readonly name: string;
  readonly appPort: number;
  readonly sidecar: Sidecar;
  readonly tunnelPort: number;
}

export interface Mesh {
  readonly pki: TestPki;
  readonly instances: Instance[];
  readonly client: Sidecar;
  readonly listenerPort: number;
  /** The caller sidecar's metrics. */
  readonly registry: Registry;
  policy(yaml: string): SidecarConfig['policy'];
  /** Applies `yaml` at every destination sidecar. */
  setPolicy(yaml: string): Promise<void>;
  /** Applies traffic resources (YAML) at the caller sidecar, as a config push does. */
  setTraffic(yaml: string): Promise<void>;
  close(): Promise<void>;
}

export const ALLOW_WEB = `
apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: echo-callers, namespace: shop }
spec:
  destination: echo
  rules:
    - action: allow
      from: [web]
`;

export interface MeshOptions {
  /** The app port of each instance (its server is the test's). */
  readonly appPorts: readonly number[];
  readonly protocol: PortProtocol;
  readonly policy?: string;
  readonly logger?: Logger;
  readonly clientLogger?: Logger;
  /** Labels of each instance's endpoint (`version: v2`), for TrafficRoute backends. */
  readonly labels?: readonly Readonly<Record<string, string>>[];
  /** Traffic resources (YAML) in force at the caller sidecar. */
  readonly traffic?: string;
}

export async function startMesh(options: MeshOptions): Promise<Mesh> {
  const pki = await createTestPki();
  const policy = (yaml: string): SidecarConfig['policy'] => compilePolicy(parsePolicyFiles([{ path: 'policy.yaml', text: yaml }]), { trustDomain: pki.trustDomain, rootNamespace: 'trellis-system' });
  const instances: Instance[] = [];
  const servicePort = 50051;
  for (const [i, appPort] of options.appPorts.entries()) {
    const sidecar = createSidecar({
      service: 'echo',
      namespace: 'shop',
      trustDomain: pki.trustDomain,
      zone: 'zone-a',
      identity: await pki.issue('echo', 'shop'),
      appPorts: [{ port: appPort, protocol: options.protocol, host: '127.0.0.1' }],
      tunnel: { address: '127.0.0.1', port: 0 },
      admin: null,
      logger: options.logger ?? silentLogger(),
      registry: new Registry(),
      config: { upstreams: [], listeners: [], policy: policy(options.policy ?? ALLOW_WEB) },
    });
    await sidecar.start();
    instances.push({ name: `i${i}`, appPort, sidecar, tunnelPort: sidecar.addresses().tunnel?.port ?? 0 });
  }
  // Every instance serves the service port on its own app port (Endpoint.targetPorts).
  const endpoints = instances.map((inst, i) => ({
    address: '127.0.0.1',
    tunnelPort: inst.tunnelPort,
    zone: 'zone-a',
    healthy: true,
    targetPorts: { [servicePort]: inst.appPort },
    ...(options.labels?.[i] === undefined ? {} : { labels: options.labels[i] }),
  }));
  const traffic = (yaml: string): SidecarConfig['traffic'] => compileTraffic(parseTrafficFiles([{ path: 'traffic.yaml', text: yaml }]));
  const registry = new Registry();
  const upstreams: SidecarConfig['upstreams'] = [{ name: 'echo', namespace: 'shop', ports: [{ port: servicePort, targetPort: options.appPorts[0] as number, protocol: options.protocol }], endpoints }];
  const listeners: SidecarConfig['listeners'] = [{ bindAddress: '127.0.0.1', localPort: 0, service: 'echo', namespace: 'shop', port: servicePort }];
  const client = createSidecar({
    service: 'web',
    namespace: 'shop',
    trustDomain: pki.trustDomain,
    zone: 'zone-a',
    identity: await pki.issue('web', 'shop'),
    appPorts: [],
    tunnel: { address: '127.0.0.1', port: 0 },
    admin: null,
    logger: options.clientLogger ?? silentLogger(),
    registry,
    config: { upstreams, listeners, policy: policy(''), ...(options.traffic === undefined ? {} : { traffic: traffic(options.traffic) }) },
  });
  await client.start();
  const listenerPort = client.addresses().listeners[0]?.address?.port ?? 0;
  return {
    pki,
    instances,
    client,
    listenerPort,
    registry,
    policy,
    async setPolicy(yaml: string): Promise<void> {
      for (const inst of instances) await inst.sidecar.applyConfig({ upstreams: [], listeners: [], policy: policy(yaml) });
    },
    async setTraffic(yaml: string): Promise<void> {
      // The same listener spec (localPort 0): the listener bound at start stays.
      await client.applyConfig({ upstreams, listeners, policy: policy(''), traffic: traffic(yaml) });
    },
    async close(): Promise<void> {
      await client.stop(0);
      for (const inst of instances) await inst.sidecar.stop(0);
    },
  };
}

export function echoClient(echo: EchoPackage, port: number): grpc.Client & Record<string, (...args: unknown[]) => unknown> {
  return new echo.Echo(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 * 1024 * 1024 }) as grpc.Client & Record<string, (...args: unknown[]) => unknown>;
}

export function unary(client: grpc.Client & Record<string, (...args: unknown[]) => unknown>, msg: EchoMsg, options: { deadlineMs?: number; metadata?: grpc.Metadata } = {}): Promise<{ reply?: EchoMsg; err?: grpc.ServiceError; metadata?: grpc.Metadata; trailers?: grpc.Metadata }> {
  return new Promise((resolve) => {
    const out: { reply?: EchoMsg; err?: grpc.ServiceError; metadata?: grpc.Metadata; trailers?: grpc.Metadata } = {};
    const callOptions = options.deadlineMs === undefined ? {} : { deadline: Date.now() + options.deadlineMs };
    const call = (client.Unary as (m: EchoMsg, md: grpc.Metadata, o: grpc.CallOptions, cb: (err: grpc.ServiceError | null, r?: EchoMsg) => void) => grpc.ClientUnaryCall)(
      msg,
      options.metadata ?? new grpc.Metadata(),
      callOptions,
      (err, reply) => {
        if (err !== null) out.err = err;
        else out.reply = reply;
      },
    );
    call.on('metadata', (m: grpc.Metadata) => (out.metadata = m));
    call.on('status', (s: grpc.StatusObject) => {
      out.trailers = s.metadata;
      // The callback runs before 'status' for grpc-js; resolve after both.
      setImmediate(() => resolve(out));
    });
  });
}
