/**
 * `trellis demo` (`npm run demo`): a whole mesh on loopback with the embedded defaults. A control plane
 * with its CA, three small services (frontend, orders, payments) each beside its agent, and a policy
 * that allows frontend→orders and orders→payments (POST only) and nothing else. It makes an allowed call
 * and two denied ones, prints what happened (SPIFFE IDs, the deciding rules, a few metric lines), and
 * exits 0 only when every call behaved as the policy says. Every process it started is stopped on the
 * way out; `--keep-running` leaves the mesh up until Ctrl-C.
 */
import { fileURLToPath } from 'node:url';
import { EXIT_FAILURE, EXIT_OK, type Command, type CommandContext } from './command.js';
import { untilSignal } from './control.js';
import { InputError } from '../common/errors.js';
import { formatHelp, parseFlags, type CommandSpec } from './flag-spec.js';
import { describeError } from '../common/errors.js';
import { DENIED_BY_HEADER } from '../proxy/core/tunnel-protocol.js';
import { DemoMesh, freePort } from '../demo/demo-mesh.js';
import { callUpstream, startSampleApps, type SampleApps, type UpstreamReply } from '../demo/sample-apps.js';
import { CODE } from '../common/error-codes.js';
import { DEMO_POLICY as POLICY, describeReply, waitForCheckout } from './demo-policy.js';
import { runZonesDemo } from './demo-zones.js';

const SPEC = {
  usage: 'trellis demo [--zones 1|2] [--keep-running] [--keep-files]',
  about: `Starts a mesh on loopback: a control plane, and frontend, orders and payments each beside an agent.
Policy: frontend may call orders; orders may call payments with POST only; nothing else.
Shows an allowed call, two denied calls with the rule that decided, the SPIFFE IDs and some metrics;
exits 0 when everything behaved as the policy says.
With --zones 2: a global control plane, zones east and west each with a control plane and an ingress;
frontend in east, payments only in west, orders in both; shows a call crossing to west through west's
ingress, and one west's policy refuses.`,
  flags: {
    zones: { type: 'string', value: 'N', help: '1: one control plane; 2: a global, zones east and west, and their ingresses', whenAbsent: '1' },
    'keep-running': { type: 'boolean', help: 'leave the mesh up and print how to reach it (Ctrl-C stops it)', whenAbsent: 'off: stop after the calls' },
    'keep-files': { type: 'boolean', help: 'keep the temp dir (data dir, policy, tokens) for a look afterwards', whenAbsent: 'off: removed' },
  },
} as const satisfies CommandSpec;

const USAGE = formatHelp(SPEC);


interface Check {
  readonly what: string;
  readonly ok: boolean;
}

function indent(text: string, prefix = '      '): string {
  return text.split('\n').map((l) => prefix + l).join('\n');
}

function denialLine(log: string, source: string): Record<string, unknown> | undefined {
  const lines = log.split('\n').filter((l) => l.includes('denied by policy') && l.includes(source));
  const last = lines.at(-1);
  if (last === undefined) return undefined;
  try {
    return JSON.parse(last) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

async function run(mesh: DemoMesh, out: NodeJS.WritableStream, keepRunning: boolean): Promise<number> {
  const print = (line = ''): void => void out.write(`${line}\n`);
  print('Trellis demo: a service mesh on loopback\n');
  mesh.writePolicy('shop.yaml', POLICY);
  const control = await mesh.startControl();
  print(`  control plane   ${String(control.ready.api)}   admin ${String(control.ready.admin)}`);

  const ports = { frontendToOrders: await freePort(), frontendToPayments: await freePort(), ordersToPayments: await freePort() };
  const apps: SampleApps = await startSampleApps(ports, DENIED_BY_HEADER);
  try {
    const payments = await mesh.startAgent({ service: 'payments', appPort: apps.ports.payments, upstreams: [] });
    const orders = await mesh.startAgent({ service: 'orders', appPort: apps.ports.orders, upstreams: [`payments=${ports.ordersToPayments}`] });
    const frontend = await mesh.startAgent({ service: 'frontend', appPort: apps.ports.frontend, upstreams: [`orders=${ports.frontendToOrders}`, `payments=${ports.frontendToPayments}`] });
    for (const agent of [frontend, orders, payments]) {
      print(`  ${agent.name.padEnd(14)}  ${String(agent.ready.spiffeId).padEnd(46)} admin http://127.0.0.1:${String(agent.ready.admin)}`);
    }
    print('\nPolicy: frontend → orders allowed; orders → payments allowed for POST; nothing else.\n');

    const checks: Check[] = [];
    const checkout = await waitForCheckout(apps.ports.frontend, 30_000);
    const chain = checkout.status === 200 ? (JSON.parse(checkout.body) as { order: UpstreamReply }) : undefined;
    const orderBody = chain?.order.status === 201 ? (JSON.parse(chain.order.body) as { payment: UpstreamReply }) : undefined;
    print('1. Allowed: frontend → orders (POST /orders), which calls orders → payments (POST /charge)');
    print(`   frontend → orders:   ${chain === undefined ? describeReply(checkout) : describeReply(chain.order)}`);
    print(`   orders → payments:   ${orderBody === undefined ? 'not reached' : describeReply(orderBody.payment)}`);
    if (orderBody !== undefined) print(indent(orderBody.payment.body));
    checks.push({ what: 'frontend → orders → payments (POST) allowed', ok: chain?.order.status === 201 && orderBody?.payment.status === 200 });

    const hitsBefore = apps.paymentsHits();
    const refund = await callUpstream(apps.ports.orders, 'GET', '/refund-check', DENIED_BY_HEADER);
    const refundReply = refund.status === 200 ? (JSON.parse(refund.body) as { payment: UpstreamReply }).payment : refund;
    print('\n2. Denied: orders → payments with GET /refunds (only POST is allowed)');
    print(`   orders → payments:   ${describeReply(refundReply)}`);
    print(indent(refundReply.body));
    const sneak = await callUpstream(apps.ports.frontend, 'GET', '/sneak', DENIED_BY_HEADER);
    const sneakReply = sneak.status === 200 ? (JSON.parse(sneak.body) as { payment: UpstreamReply }).payment : sneak;
    print('\n3. Denied: frontend → payments (a deny rule names frontend)');
    print(`   frontend → payments: ${describeReply(sneakReply)}`);
    print(indent(sneakReply.body));
    checks.push({ what: 'orders → payments GET denied (403)', ok: refundReply.status === 403 });
    checks.push({ what: 'frontend → payments denied by payments-callers rule 1', ok: sneakReply.status === 403 && (sneakReply.deniedBy ?? '').includes('payments-callers') });
    checks.push({ what: 'payments saw neither denied request', ok: apps.paymentsHits() === hitsBefore });

    const logged = denialLine(payments.log(), 'frontend');
    if (logged !== undefined) {
      print('\n   The payments sidecar logged the denial:');
      print(indent(JSON.stringify(Object.fromEntries(Object.entries(logged).filter(([k]) => ['msg', 'source', 'destination', 'method', 'path', 'policy', 'rule', 'reason', 'correlationId'].includes(k))))));
    }

    const metrics = await fetch(`http://127.0.0.1:${String(payments.ready.admin)}/metrics`).then((r) => r.text(), () => '');
    const interesting = metrics.split('\n').filter((l) => /^(trellis_policy_denials_total|trellis_http_requests_total|trellis_certificate_expiry_seconds|trellis_agent_control_plane_connected)/.test(l));
    print('\nMetrics of the payments sidecar (a few lines of /metrics):');
    print(indent(interesting.slice(0, 8).join('\n') || '(none yet)', '   '));

    print('\nVerdict:');
    for (const c of checks) print(`   ${c.ok ? 'ok  ' : 'FAIL'}  ${c.what}`);
    const allOk = checks.every((c) => c.ok);
    print(allOk ? '\nEverything behaved as the policy says.' : '\nSomething did not behave as the policy says (see above).');

    if (keepRunning) {
      // Light traffic, so the UI's graph has live numbers and a denial now and then.
      const traffic = setInterval(() => {
        void callUpstream(apps.ports.frontend, 'GET', '/checkout', DENIED_BY_HEADER).catch(() => undefined);
        void callUpstream(apps.ports.frontend, 'GET', '/sneak', DENIED_BY_HEADER).catch(() => undefined);
      }, 1_000);
      traffic.unref();
      print(`\nThe web UI: ${String(control.ready.admin)}/ui/   (zones, services, the live call graph, policy and explain, denials)`);
      print(`\nThe mesh keeps running, with a checkout and a denied call every second. Try:
   curl http://127.0.0.1:${apps.ports.frontend}/checkout       # allowed chain
   curl http://127.0.0.1:${apps.ports.orders}/refund-check   # orders → payments GET: denied
   curl http://127.0.0.1:${apps.ports.frontend}/sneak          # frontend → payments: denied
   curl ${String(control.ready.admin)}/registry
   policies in ${mesh.policyDir} (edit them: the change applies within a second)
Ctrl-C stops everything.`);
      await untilSignal();
      clearInterval(traffic);
    }
    return allOk ? EXIT_OK : EXIT_FAILURE;
  } finally {
    await apps.close();
  }
}

export const demoCommand: Command = {
  name: 'demo',
  usage: USAGE,
  forms: { '': SPEC },
  async run(argv: readonly string[], ctx: CommandContext): Promise<number> {
    const { values, positionals } = parseFlags(SPEC, argv);
    if (positionals.length > 0) throw new InputError(CODE.CLI_USAGE, `unexpected argument "${positionals[0]}"\n\n${USAGE}`);
    const zones = values.zones ?? '1';
    if (zones !== '1' && zones !== '2') throw new InputError(CODE.CLI_USAGE, `--zones: "${zones}" is not 1 or 2\n\n${USAGE}`);
    const main = fileURLToPath(new URL('./main.js', import.meta.url));
    const mesh = new DemoMesh(main, values['keep-files'] === true);
    // Ctrl-C during start-up must still stop every process started so far.
    const interrupted = untilSignal().then(() => 'interrupted' as const);
    try {
      const keepRunning = values['keep-running'] === true;
      const demo = zones === '2' ? runZonesDemo(mesh, ctx.stdout, keepRunning).then((ok) => (ok ? EXIT_OK : EXIT_FAILURE)) : run(mesh, ctx.stdout, keepRunning);
      const result = await Promise.race([demo, interrupted]);
      if (result === 'interrupted') {
        ctx.stderr.write('trellis demo: interrupted, stopping the mesh\n');
        return EXIT_FAILURE;
      }
      return result;
    } catch (err) {
      ctx.stderr.write(`trellis demo: ${describeError(err)}\n`);
      return EXIT_FAILURE;
    } finally {
      await mesh.close();
      if (values['keep-files'] === true) ctx.stderr.write(`trellis demo: files kept in ${mesh.dir}\n`);
    }
  },
};
