/**
 * From Kubernetes objects (the fixtures are the API's JSON) to what a caller's sidecar sees of a
 * Service: ports with target ports and protocols, cluster IPs, and one tunnel endpoint per mesh pod.
 */
import { describe, expect, it } from 'vitest';
import { parsePortProtocols, podView, serviceView, sliceView, type PodView, type SliceView } from '../../control/kubernetes/kubernetes-objects.js';
import { desiredService, instanceIdOf, protocolFromName, withSubzone } from '../../control/kubernetes/service-endpoints.js';
import { fixture } from './fixtures/k8s-fake-api.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const NOW = '2026-11-23T09:00:00.000Z';

function pods(...views: (PodView | undefined)[]): (ns: string, name: string) => PodView | undefined {
  const byName = new Map(views.filter((v): v is PodView => v !== undefined).map((v) => [`${v.namespace}/${v.name}`, v]));
  return (ns, name) => byName.get(`${ns}/${name}`);
}

describe('Kubernetes objects read from the API JSON', () => {
  it('reads a Service: TCP ports only, named target ports kept, cluster IPs', () => {
    const view = serviceView(fixture('k8s-service-payments.json'));
    expect(view).toEqual({
      namespace: 'shop',
      name: 'payments',
      externalName: false,
      clusterIps: ['10.96.120.15'],
      ports: [
        { name: 'http', port: 80, targetPort: 'http', appProtocol: undefined },
        { name: 'grpc-admin', port: 9000, targetPort: 9000, appProtocol: 'kubernetes.io/h2c' },
      ],
    });
    const headless = fixture<Json>('k8s-service-payments.json');
    headless.spec.clusterIP = 'None';
    headless.spec.clusterIPs = ['None'];
    expect(serviceView(headless)?.clusterIps).toEqual([]);
    expect(serviceView({ metadata: { name: 'x' } })).toBeUndefined();
  });

  it('reads an EndpointSlice: its service, resolved ports, and each endpoint\'s pod and readiness', () => {
    const slice = fixture<Json>('k8s-endpointslice-payments.json');
    delete slice.endpoints[1].conditions; // absent conditions mean ready
    const view = sliceView(slice) as SliceView;
    expect(view.service).toBe('payments');
    expect([...view.ports]).toEqual([['http', 8080], ['grpc-admin', 9000]]);
    expect(view.endpoints).toEqual([
      { addresses: ['10.244.1.17'], ready: true, podName: 'payments-5d8f9c7b6d-q2w7x', zone: 'us-east-1a' },
      { addresses: ['10.244.2.9'], ready: true, podName: 'payments-5d8f9c7b6d-z9k4m', zone: 'us-east-1b' },
    ]);
    delete slice.metadata.labels['kubernetes.io/service-name'];
    expect(sliceView(slice)).toBeUndefined();
  });

  it('reads a pod: sidecar tunnel port (native or classic layout), IPs, service account', () => {
    const pod = fixture<Json>('k8s-pod-payments.json');
    expect(podView(pod)).toMatchObject({ name: 'payments-5d8f9c7b6d-q2w7x', uid: '0b8e2a61-1f0e-4d7e-9a55-5c1b8f3e7d21', ips: ['10.244.1.17'], serviceAccount: 'payments', tunnelPort: 15008 });
    const classic = fixture<Json>('k8s-pod-payments.json');
    classic.spec.containers.unshift({ ...classic.spec.initContainers[1], restartPolicy: undefined, ports: [{ name: 'trellis-tunnel', containerPort: 15108, protocol: 'TCP' }] });
    classic.spec.initContainers = [classic.spec.initContainers[0]];
    expect(podView(classic)?.tunnelPort).toBe(15108);
    const plain = fixture<Json>('k8s-pod-payments.json');
    plain.spec.initContainers = [];
    expect(podView(plain)?.tunnelPort).toBeUndefined();
  });

  it('reads the injector\'s port-protocols annotation leniently', () => {
    expect([...parsePortProtocols('8080=http, 9000=tcp,bogus,70000=http')]).toEqual([[8080, 'http'], [9000, 'tcp']]);
    expect(parsePortProtocols(undefined).size).toBe(0);
  });
});

describe('desiredService', () => {
  const service = serviceView(fixture('k8s-service-payments.json'))!;
  const pod1 = podView(fixture('k8s-pod-payments.json'))!;
  const pod2Json = fixture<Json>('k8s-pod-payments.json');
  pod2Json.metadata.name = 'payments-5d8f9c7b6d-z9k4m';
  pod2Json.metadata.uid = '5c7d1e2f-3a4b-4c5d-8e9f-0a1b2c3d4e5f';
  pod2Json.status.podIP = '10.244.2.9';
  pod2Json.status.podIPs = [{ ip: '10.244.2.9' }, { ip: 'fd00:10:244:2::9' }];
  const pod2 = podView(pod2Json)!;
  const slice = sliceView(fixture('k8s-endpointslice-payments.json'))!;

  it('maps Service ports to the pod ports the slice resolved, with protocols from appProtocol or name', () => {
    const desired = desiredService(service, [slice], pods(pod1, pod2), 'east', NOW);
    expect(desired.definition).toEqual({
      ports: [
        { port: 80, targetPort: 8080, protocol: 'http', name: 'http' },
        { port: 9000, targetPort: 9000, protocol: 'http2', name: 'grpc-admin' },
      ],
      virtualIps: ['10.96.120.15'],
    });
    const instance = desired.instances.get(instanceIdOf('payments', pod1));
    expect(instance).toEqual({
      instanceId: 'k8s:payments:0b8e2a61-1f0e-4d7e-9a55-5c1b8f3e7d21',
      service: 'payments',
      namespace: 'shop',
      zone: 'east',
      address: '10.244.1.17',
      tunnelPort: 15008,
      ports: [
        { port: 8080, protocol: 'http', name: 'http' },
        { port: 9000, protocol: 'http2', name: 'grpc-admin' },
      ],
      upstreams: [],
      healthy: true,
      updatedAt: NOW,
      // The pod's labels (pod-template-hash left out): what TrafficRoute backends select; the slice's zone
      // for the pod (its node's topology.kubernetes.io/zone) as its subzone inside the mesh zone.
      labels: { app: 'payments', 'trellis.dev/subzone': 'us-east-1a' },
    });
    expect(desired.outsideMesh).toBe(0);
  });

  it('is one endpoint per pod across an IPv4 and an IPv6 slice, ready if either says so', () => {
    const v6 = fixture<Json>('k8s-endpointslice-payments.json');
    v6.metadata.name = 'payments-v6abc';
    v6.addressType = 'IPv6';
    v6.endpoints = [{ ...v6.endpoints[1], addresses: ['fd00:10:244:2::9'], conditions: { ready: true } }];
    const v4 = fixture<Json>('k8s-endpointslice-payments.json');
    v4.endpoints[1].conditions = { ready: false, serving: false, terminating: false };
    const desired = desiredService(service, [sliceView(v4)!, sliceView(v6)!], pods(pod1, pod2), 'east', NOW);
    expect([...desired.instances.values()].map((i) => [i.address, i.healthy])).toEqual([
      ['10.244.1.17', true],
      ['10.244.2.9', true],
    ]);
  });

  it('skips endpoints that are not mesh pods, and FQDN slices', () => {
    const mixed = fixture<Json>('k8s-endpointslice-payments.json');
    mixed.endpoints.push({ addresses: ['192.168.10.4'], conditions: { ready: true } }); // a VM added by hand, no targetRef
    const fqdn: Json = { ...fixture<Json>('k8s-endpointslice-payments.json'), addressType: 'FQDN' };
    fqdn.metadata = { ...fqdn.metadata, name: 'payments-fqdn' };
    const desired = desiredService(service, [sliceView(mixed)!, sliceView(fqdn)!], pods(pod1), 'east', NOW);
    expect([...desired.instances.values()].map((i) => i.address)).toEqual(['10.244.1.17']);
    expect(desired.outsideMesh).toBe(2); // the pod without a known sidecar, and the hand-made entry
  });

  it('leaves out a named target port no slice resolves yet, and honours explicit appProtocol http and the pods\' annotation', () => {
    const json = fixture<Json>('k8s-service-payments.json');
    json.spec.ports = [
      { name: 'web', port: 80, targetPort: 'web', protocol: 'TCP' },
      { name: 'api', port: 8443, targetPort: 8443, protocol: 'TCP', appProtocol: 'HTTP' },
      { name: 'tcp-legacy', port: 7000, targetPort: 7001, protocol: 'TCP' },
      { port: 6000, protocol: 'TCP' },
    ];
    const annotated = fixture<Json>('k8s-pod-payments.json');
    annotated.metadata.annotations['trellis.dev/port-protocols'] = '7001=http';
    const desired = desiredService(serviceView(json)!, [], pods(podView(annotated)), 'east', NOW);
    expect(desired.definition.ports).toEqual([
      { port: 6000, targetPort: 6000, protocol: 'tcp' },
      { port: 7000, targetPort: 7001, protocol: 'tcp', name: 'tcp-legacy' }, // no pod backs it yet, so no annotation applies
      { port: 8443, targetPort: 8443, protocol: 'http', name: 'api' },
    ]);
    const slice7001 = fixture<Json>('k8s-endpointslice-payments.json');
    slice7001.ports = [{ name: 'tcp-legacy', port: 7001, protocol: 'TCP' }];
    slice7001.endpoints = [slice7001.endpoints[0]];
    const withPod = desiredService(serviceView(json)!, [sliceView(slice7001)!], pods(podView(annotated)), 'east', NOW);
    expect(withPod.definition.ports.find((p) => p.port === 7000)?.protocol).toBe('http');
  });

  it('leaves out mesh pods running as another service account (their sidecar would refuse the calls)', () => {
    const other = fixture<Json>('k8s-pod-payments.json');
    other.spec.serviceAccountName = 'default';
    const desired = desiredService(service, [slice], pods(podView(other), pod2), 'east', NOW);
    expect([...desired.instances.values()].map((i) => i.address)).toEqual(['10.244.2.9']);
    expect(desired.otherIdentity).toEqual(['payments-5d8f9c7b6d-q2w7x (service account default)']);
  });

  it('takes the subzone from the pod\'s own trellis.dev/subzone label, else the slice\'s zone, and keeps 16 labels at most', () => {
    const labelled = fixture<Json>('k8s-pod-payments.json');
    labelled.metadata.labels = { ...labelled.metadata.labels, 'trellis.dev/subzone': 'rack-7' };
    const own = desiredService(service, [slice], pods(podView(labelled), pod2), 'east', NOW);
    expect([...own.instances.values()].map((i) => i.labels?.['trellis.dev/subzone'])).toEqual(['rack-7', 'us-east-1b']);
    const odd = fixture<Json>('k8s-endpointslice-payments.json');
    odd.endpoints[0].zone = 'not a label value!';
    delete odd.endpoints[1].zone;
    const none = desiredService(service, [sliceView(odd)!], pods(pod1, pod2), 'east', NOW);
    expect([...none.instances.values()].map((i) => i.labels?.['trellis.dev/subzone'])).toEqual([undefined, undefined]);
    const many = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${String(i).padStart(2, '0')}`, 'v']));
    const full = withSubzone(many, 'us-east-1a') ?? {};
    expect(Object.keys(full)).toHaveLength(16);
    expect(full['trellis.dev/subzone']).toBe('us-east-1a');
  });

  it('reads protocols from port names as the injector does', () => {
    expect(['http', 'HTTP-web', 'http-api', 'https', 'http2', 'grpc', 'tcp', undefined].map(protocolFromName)).toEqual(['http', 'http', 'http', 'tcp', 'http2', 'grpc', 'tcp', 'tcp']);
  });
});
