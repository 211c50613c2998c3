/** The policy matrix (who may open a TCP stream to whom, and the rule that decides) and the explain box. */
import { useState } from 'preact/hooks';
import type { TargetedSubmitEvent } from 'preact';
import { usePolled, type Explained, type Matrix } from './data.js';
import { Problem } from './views.js';

function decider(policy: string | null, rule: number | null): string {
  return policy === null ? 'default-deny' : rule === null ? policy : `${policy}#${rule}`;
}

function Explain({ services }: { services: string[] }) {
  const [answer, setAnswer] = useState<Explained | string | undefined>(undefined);
  const submit = async (event: TargetedSubmitEvent<HTMLFormElement>): Promise<void> => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const q = new URLSearchParams();
    for (const key of ['from', 'to', 'method', 'path']) q.set(key, String(form.get(key) ?? '').trim());
    try {
      const res = await fetch(`api/explain?${q.toString()}`, { cache: 'no-store' });
      const body = (await res.json()) as Explained & { error?: string };
      setAnswer(res.ok ? body : (body.error ?? `${res.status}`));
    } catch (err) {
      setAnswer((err as Error).message);
    }
  };
  return (
    <div>
      <h3 id="explain-h">Explain</h3>
      <form class="explain" aria-labelledby="explain-h" onSubmit={(e) => void submit(e)}>
        <label>from <input name="from" list="svc" required placeholder="ns/service" /></label>
        <label>to <input name="to" list="svc" required placeholder="ns/service" /></label>
        <label>method <input name="method" placeholder="GET (optional)" size={8} /></label>
        <label>path <input name="path" placeholder="/ (optional)" size={12} /></label>
        <button type="submit">Explain</button>
        <datalist id="svc">{services.map((s) => <option key={s} value={s} />)}</datalist>
      </form>
      <output aria-live="polite" class="explain-answer">
        {typeof answer === 'string' && <p class="error">{answer}</p>}
        {typeof answer === 'object' && (
          <p>
            <strong class={answer.decision.allowed ? 'ok' : 'bad'}>{answer.decision.allowed ? 'allowed' : 'denied'}</strong>
            {' by '}<code>{decider(answer.decision.policy, answer.decision.rule)}</code>: {answer.decision.reason}
          </p>
        )}
      </output>
    </div>
  );
}

export function Policy() {
  const { data, error } = usePolled<Matrix>('policy', 5000);
  return (
    <section aria-labelledby="policy-h">
      <h2 id="policy-h">Policy</h2>
      <Problem error={error} />
      <Explain services={data?.services ?? []} />
      <h3>Matrix <span class="muted">(rows call columns, TCP; {data?.revision.slice(0, 19)})</span></h3>
      {data?.truncated && <p class="warn">Only the first {data.services.length} services are shown.</p>}
      <div class="scroll"><table class="matrix">
        <thead><tr><th>caller \ callee</th>{data?.services.map((s) => <th key={s} scope="col">{s}</th>)}</tr></thead>
        <tbody>
          {data?.services.map((from, i) => (
            <tr key={from}><th scope="row">{from}</th>
              {data.cells[i]?.map((c, j) => (
                <td key={j} class={`cell ${c.allowed ? 'ok' : 'bad'}`} title={decider(c.policy, c.rule)}>{c.allowed ? '✓' : '✗'}<span class="muted"> {decider(c.policy, c.rule)}</span></td>
              ))}
            </tr>
          ))}
        </tbody>
      </table></div>
    </section>
  );
}
