/**
 * A TCP front for a test app that records every byte the app is sent, before any HTTP parser sees them: the
 * smuggling tests assert on what reached the app, not on what the app's own parser made of it.
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export interface ByteRecorder {
  readonly port: number;
  /** Everything sent to the app so far, all connections in order of arrival (latin1). */
  text(): string;
  close(): Promise<void>;
}

export async function startByteRecorder(appPort: number): Promise<ByteRecorder> {
  const parts: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((front) => {
    const back = connect(appPort, '127.0.0.1');
    sockets.add(front).add(back);
    front.on('data', (chunk: Buffer) => parts.push(chunk));
    front.pipe(back);
    back.pipe(front);
    const close = (): void => {
      front.destroy();
      back.destroy();
      sockets.delete(front);
      sockets.delete(back);
    };
    front.on('error', close).on('close', close);
    back.on('error', close).on('close', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    text: () => Buffer.concat(parts).toString('latin1'),
    async close(): Promise<void> {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
