import { describe, expect, it } from 'vitest';
import { isPortProtocol, protocolFromAppProtocol, protocolFromPortName } from '../../api/port-protocol.js';
import { protocolFromName as injectorProtocolFromName } from '../../injector/app-ports.js';
import { protocolFromName as serviceProtocolFromName } from '../../control/kubernetes/service-endpoints.js';
import { appPortsFromFlags } from '../../agent/app-port-list.js';
import { parsePortProtocols } from '../../control/kubernetes/kubernetes-objects.js';

describe('port protocols, as Istio and Kuma users write them', () => {
  it('reads port names by prefix', () => {
    const cases: [string | undefined, string][] = [
      ['http', 'http'],
      ['http-web', 'http'],
      ['HTTP-Web', 'http'],
      ['http2', 'http2'],
      ['http2-api', 'http2'],
      ['h2c-api', 'http2'],
      ['grpc', 'grpc'],
      ['grpc-orders', 'grpc'],
      ['grpc-web', 'http'],
      ['grpc-web-ui', 'http'],
      ['https', 'tcp'],
      ['httpx', 'tcp'],
      ['grpcs', 'tcp'],
      ['tcp-db', 'tcp'],
      ['', 'tcp'],
      [undefined, 'tcp'],
    ];
    for (const [name, expected] of cases) {
      expect(protocolFromPortName(name) ?? 'tcp', String(name)).toBe(expected);
      expect(injectorProtocolFromName(name), String(name)).toBe(expected);
      expect(serviceProtocolFromName(name), String(name)).toBe(expected);
    }
  });

  it('reads Kubernetes appProtocol values', () => {
    expect(protocolFromAppProtocol('kubernetes.io/h2c')).toBe('http2');
    expect(protocolFromAppProtocol('grpc')).toBe('grpc');
    expect(protocolFromAppProtocol('GRPC')).toBe('grpc');
    expect(protocolFromAppProtocol('http')).toBe('http');
    expect(protocolFromAppProtocol('kubernetes.io/ws')).toBe('tcp');
    expect(protocolFromAppProtocol('https')).toBe('tcp');
  });

  it('takes every protocol from the agent flags and the pod annotation, and refuses others', () => {
    const problems: string[] = [];
    const ports = appPortsFromFlags(
      [
        { name: 'app-port', value: '8080' },
        { name: 'protocol', value: 'grpc' },
        { name: 'app-port', value: '8081' },
        { name: 'protocol', value: 'http2' },
      ],
      '127.0.0.1',
      problems,
    );
    expect(problems).toEqual([]);
    expect(ports.map((p) => p.protocol)).toEqual(['grpc', 'http2']);
    appPortsFromFlags([{ name: 'app-port', value: '8080' }, { name: 'protocol', value: 'h3' }], '127.0.0.1', problems);
    expect(problems).toEqual(['--protocol "h3": expected tcp, http, http2, grpc']);
    expect([...parsePortProtocols('8080=grpc, 8081=http2,8082=http,8083=tcp,8084=h3')]).toEqual([
      [8080, 'grpc'],
      [8081, 'http2'],
      [8082, 'http'],
      [8083, 'tcp'],
    ]);
    expect(['tcp', 'http', 'http2', 'grpc', 'h2'].map(isPortProtocol)).toEqual([true, true, true, true, false]);
  });
});
