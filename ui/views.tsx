/** The UI's tables: zones, services, denials, agents. Each is a plain table (screen readers and keyboard need nothing more). */
import { fmtDuration, usePolled, type Agent, type Denial, type GlobalOverview, type Overview, type Service } from './data.js';

export function Problem({ error }: { error: string | undefined }) {
  return error === undefined ? null : <p class="error" role="alert">{error}</p>;
}

/** The global's zones: sync state (offline once the lease lapsed), lag, and whether their golden metrics are current. */
function GlobalZones({ data }: { data: GlobalOverview }) {
  return (
    <>
      <p class="muted">global control plane ({data.role}); a zone goes offline {fmtDuration(data.leaseMs)} after it was last heard</p>
      <div class="scroll"><table>
        <thead><tr><th>zone</th><th>sync</th><th>last heard</th><th>lag</th><th>services</th><th>golden metrics</th></tr></thead>
        <tbody>
          {data.zones.map((z) => (
            <tr key={z.name} data-zone={z.name} data-state={z.state}>
              <td>{z.name}</td>
              <td class={z.state === 'online' ? 'ok' : 'bad'}>{z.state}{z.state === 'online' && !z.connected ? ' (not connected)' : ''}</td>
              <td>{fmtDuration(z.lastSeenAgoMs)} ago</td><td>{fmtDuration(z.lagMs)}</td><td>{z.services}</td>
              <td class={z.golden?.current ? '' : 'muted'}>{z.golden === null ? 'none yet' : `${z.golden.edges} pairs, ${fmtDuration(z.golden.ageMs)} ago`}</td>
            </tr>
          ))}
        </tbody>
      </table></div>
    </>
  );
}

export function Zones() {
  const { data: polled, error } = usePolled<Overview | GlobalOverview>('overview');
  const data = polled?.mode === 'global' ? undefined : (polled as Overview | undefined);
  if (polled?.mode === 'global') return <section aria-labelledby="zones-h"><h2 id="zones-h">Zones</h2><Problem error={error} /><GlobalZones data={polled as GlobalOverview} /></section>;
  return (
    <section aria-labelledby="zones-h">
      <h2 id="zones-h">Zones</h2>
      <Problem error={error} />
      {data && (
        <div class="scroll"><table>
          <thead><tr><th>zone</th><th>mode</th><th>agents</th><th>config version</th><th>sync with global</th><th>lag</th></tr></thead>
          <tbody><tr data-zone={data.zone}>
            <td>{data.zone}</td><td>{data.mode}</td><td>{data.agentsConnected}</td><td>{data.configVersion}</td>
            <td class={data.global === null ? 'muted' : data.global.connected ? 'ok' : 'bad'}>{data.global === null ? 'standalone' : data.global.connected ? 'online' : 'offline'}</td>
            <td>{data.global === null ? '–' : fmtDuration(data.global.staleMs)}</td>
          </tr></tbody>
        </table></div>
      )}
      {data?.global?.lastError && <p class="warn">last sync error: {data.global.lastError}</p>}
    </section>
  );
}

export function Services() {
  const { data, error } = usePolled<{ services: Service[] }>('services');
  return (
    <section aria-labelledby="services-h">
      <h2 id="services-h">Services</h2>
      <Problem error={error} />
      <div class="scroll"><table>
        <thead><tr><th>service</th><th>healthy</th><th>instance</th><th>zone</th><th>address</th><th>version</th><th>agent</th></tr></thead>
        <tbody>
          {data?.services.flatMap((s) => s.instances.map((i, n) => (
            <tr key={i.instanceId}>
              <td>{n === 0 ? `${s.namespace}/${s.service}` : ''}</td>
              <td>{n === 0 ? <span class={s.healthy === s.instances.length ? 'ok' : 'warn'}>{s.healthy}/{s.instances.length}</span> : ''}</td>
              <td>{i.instanceId}</td><td>{i.zone}</td><td>{i.address}</td><td>{i.version ?? '–'}</td>
              <td class={i.healthy ? 'ok' : 'bad'}>{i.agent}</td>
            </tr>
          )))}
        </tbody>
      </table></div>
    </section>
  );
}

export function Denials() {
  const { data, error } = usePolled<{ denials: Denial[] }>('denials');
  return (
    <section aria-labelledby="denials-h">
      <h2 id="denials-h">Recent denials</h2>
      <Problem error={error} />
      {data?.denials.length === 0 && <p class="muted">No denials heard in the last 15 minutes.</p>}
      <div class="scroll"><table>
        <thead><tr><th>when</th><th>from</th><th>to</th><th>deciding rule</th><th>count</th><th>enforced</th></tr></thead>
        <tbody>
          {data?.denials.map((d, i) => (
            <tr key={`${d.at}-${i}`} class="denial" data-at={d.at}>
              <td>{new Date(d.at).toLocaleTimeString()}</td><td>{d.source}</td><td>{d.destination}</td>
              <td class="rule">{d.policy}{d.rule === '' ? '' : `#${d.rule}`}</td><td>{d.count}</td>
              <td>{d.enforced ? 'yes' : 'dry-run'}</td>
            </tr>
          ))}
        </tbody>
      </table></div>
    </section>
  );
}

export function Agents() {
  const { data, error } = usePolled<{ agents: Agent[]; certWarningMs: number }>('agents');
  const near = data?.agents.filter((a) => a.certNearExpiry) ?? [];
  const stale = data?.agents.filter((a) => a.staleConfig) ?? [];
  return (
    <section aria-labelledby="agents-h">
      <h2 id="agents-h">Agents needing attention</h2>
      <Problem error={error} />
      <h3>Certificates near expiry {data && <span class="muted">(less than {fmtDuration(data.certWarningMs)} left)</span>}</h3>
      {near.length === 0 ? <p class="muted">None.</p> : (
        <div class="scroll"><table><thead><tr><th>instance</th><th>service</th><th>expires</th></tr></thead>
          <tbody>{near.map((a) => <tr key={a.instanceId}><td>{a.instanceId}</td><td>{a.namespace}/{a.service}</td><td class="bad">{a.certNotAfter} ({fmtDuration(a.certLeftMs ?? 0)})</td></tr>)}</tbody></table></div>
      )}
      <h3>On stale config</h3>
      {stale.length === 0 ? <p class="muted">None.</p> : (
        <div class="scroll"><table><thead><tr><th>instance</th><th>service</th><th>config version</th><th>why</th></tr></thead>
          <tbody>{stale.map((a) => <tr key={a.instanceId}><td>{a.instanceId}</td><td>{a.namespace}/{a.service}</td><td>{a.configVersion ?? '–'}</td><td class="warn">{a.configStale ? 'lost its control plane' : 'policy revision behind'}</td></tr>)}</tbody></table></div>
      )}
    </section>
  );
}
