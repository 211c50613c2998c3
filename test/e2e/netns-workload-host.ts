/**
 * The apps of one workload host in a network-namespace lab, and the test's hands inside that namespace.
 * Run in the host's namespace as a script (Node strips the types; no imports but Node's own):
 *
 *   node test/e2e/netns-workload-host.ts CONTROL-SOCKET NAME=PORT...
 *
 * Each NAME=PORT is a plain HTTP app on 127.0.0.1:PORT (where its sidecar delivers) answering
 * `NAME METHOD PATH` and printing `request NAME METHOD PATH` per request. The control socket is a Unix
 * socket, which the test process (in the root namespace, where nothing of the lab is routable) reaches
 * through the file system: HTTP with JSON bodies,
 *
 *   POST /call      {url, method?, timeoutMs?}  one request from this host: {status, body, headers} | {error}
 *   POST /connect   {host, port, timeoutMs?}    a bare TCP connect: {ok: true} | {error: code}
 *   POST /stop      {app}   the app stops listening and drops its connections (it "dies")
 *   POST /start     {app}   the app listens again on its port
 *   POST /load      {url, concurrency} | {url, intervalMs}   closed-loop or open-loop requests until /load-stop
 *   POST /load-stop                       {results: [{start, end, status?, body?, error?}]} (ms since epoch)
 */
import { createServer, request, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';

interface CallResult {
  status?: number;
  body?: string;
  headers?: IncomingHttpHeaders;
  error?: string;
}

const [socketPath, ...specs] = process.argv.slice(2);
if (socketPath === undefined) throw new Error('usage: netns-workload-host.ts CONTROL-SOCKET NAME=PORT...');
const apps = new Map<string, { port: number; server: Server }>();

function appServer(name: string): Server {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      console.log(`request ${name} ${req.method} ${req.url}`);
      res.end(`${name} ${req.method} ${req.url}\n`);
    });
  });
  server.keepAliveTimeout = 30_000;
  return server;
}

function listen(name: string): Promise<void> {
  const app = apps.get(name);
  if (app === undefined) return Promise.reject(new Error(`no app ${name}`));
  app.server = appServer(name);
  return new Promise((resolve, reject) => {
    app.server.once('error', reject);
    app.server.listen(app.port, '127.0.0.1', () => resolve());
  });
}

function call(url: string, method = 'GET', timeoutMs = 5_000): Promise<CallResult> {
  return new Promise((resolve) => {
    const req = request(url, { method, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on('error', (err) => resolve({ error: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', (err) => resolve({ error: (err as NodeJS.ErrnoException).code ?? err.message }));
    req.end();
  });
}

function tryConnect(host: string, port: number, timeoutMs = 3_000): Promise<{ ok?: true; error?: string }> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: timeoutMs });
    socket.once('connect', () => {
      socket.destroy();
      resolve({ ok: true });
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve({ error: 'ETIMEDOUT' });
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
  });
}

type Timed = CallResult & { start: number; end: number };
let load: { running: boolean; results: Timed[]; pending: Promise<void>[] } | null = null;

async function timedCall(url: string, results: Timed[]): Promise<void> {
  const start = Date.now();
  const result = await call(url);
  // Bodies are short app answers; headers are not kept (there are thousands of results).
  results.push({ start, end: Date.now(), status: result.status, body: result.body, error: result.error });
}

/** `concurrency` loops of sequential requests (closed loop), or one request every `intervalMs` (open loop: a hung request does not hold back the next). */
function startLoad(url: string, concurrency: number, intervalMs: number | undefined): void {
  const state = { running: true, results: [] as Timed[], pending: [] as Promise<void>[] };
  if (intervalMs !== undefined) {
    const tick = (): void => {
      if (!state.running) return;
      state.pending.push(timedCall(url, state.results));
      setTimeout(tick, intervalMs);
    };
    tick();
  } else {
    for (let i = 0; i < concurrency; i++) {
      state.pending.push((async () => {
        while (state.running) await timedCall(url, state.results);
      })());
    }
  }
  load = state;
}

async function handle(path: string, input: Record<string, unknown>): Promise<unknown> {
  switch (path) {
    case '/call':
      return call(String(input.url), input.method === undefined ? 'GET' : String(input.method), input.timeoutMs === undefined ? 5_000 : Number(input.timeoutMs));
    case '/connect':
      return tryConnect(String(input.host), Number(input.port), input.timeoutMs === undefined ? 3_000 : Number(input.timeoutMs));
    case '/stop': {
      const app = apps.get(String(input.app));
      if (app === undefined) throw new Error(`no app ${String(input.app)}`);
      app.server.close();
      app.server.closeAllConnections();
      return { stopped: input.app };
    }
    case '/start':
      await listen(String(input.app));
      return { started: input.app };
    case '/load':
      if (load !== null) throw new Error('a load is already running');
      startLoad(String(input.url), Number(input.concurrency ?? 2), input.intervalMs === undefined ? undefined : Number(input.intervalMs));
      return { started: true };
    case '/load-stop': {
      if (load === null) throw new Error('no load is running');
      const running = load;
      load = null;
      running.running = false;
      await Promise.all(running.pending);
      return { results: running.results.sort((x, y) => x.start - y.start) };
    }
    default:
      throw new Error(`unknown control path ${path}`);
  }
}

function control(req: IncomingMessage, res: ServerResponse): void {
  let text = '';
  req.on('data', (d: Buffer) => (text += d.toString()));
  req.on('end', () => {
    handle(req.url ?? '', text === '' ? {} : (JSON.parse(text) as Record<string, unknown>)).then(
      (value) => res.end(JSON.stringify(value)),
      (err: Error) => {
        res.statusCode = 500;
        res.end(JSON.stringify({ error: err.message }));
      },
    );
  });
}

for (const spec of specs) {
  const [name, port] = spec.split('=');
  if (name === undefined || port === undefined || !/^\d+$/.test(port)) throw new Error(`app spec ${spec}: expected NAME=PORT`);
  apps.set(name, { port: Number(port), server: appServer(name) });
}
await Promise.all([...apps.keys()].map(listen));
createServer(control).listen(socketPath, () => console.log('listening'));
