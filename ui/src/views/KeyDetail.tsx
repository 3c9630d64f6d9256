import { api, type KeyDetail } from '../api';
import { CostChart } from '../CostChart';
import { displayKey, formatBasisPoints, formatDuration, formatInt, formatTime, formatUsd, formatUsdAdaptive, unixOf } from '../format';
import { Empty, LoadState, SpendCell, Stat, StatusBadge, useLoad, useNodeNow } from '../ui';
import { HINTS } from '../hints';
import { NodesTable } from './Nodes';

function Figures({ d }: { d: KeyDetail }) {
  const k = d.key;
  return (
    <section className="stats" aria-label="Key figures">
      <Stat label="Status" value={<StatusBadge status={k.status} />} hint={k.retired_reason ?? undefined} />
      <Stat
        label="Spent / budget"
        value={
          <SpendCell spent={k.spent_micro_usd} budget={k.budget_micro_usd} />
        }
      />
      <Stat label="Burn rate" value={`${formatUsdAdaptive(d.burn_rate_micro_usd_per_hour)} / h`} hint={HINTS.burn} />
      <Stat
        label="Budget runs out in"
        value={d.budget_runs_out_in_secs == null ? 'not burning' : formatDuration(d.budget_runs_out_in_secs)}
        hint={HINTS.runway}
      />
      <Stat label="Nodes / cap" value={`${k.nodes} / ${k.node_cap ?? '∞'}`} />
      <Stat label="Admin API id" value={k.api_key_id ?? 'unresolved'} hint={k.unresolved_reason ?? undefined} />
      {d.drift_basis_points != null && (
        <Stat
          label={`Estimate vs ${d.authoritative_source === 'analytics' ? 'analytics' : 'cost report'}`}
          value={
            <span className={d.drift_warning ? 'warn' : undefined}>
              {formatBasisPoints(d.drift_basis_points)}
              {d.drift_warning ? ' ⚠' : ''}
            </span>
          }
          hint={`(estimate − authoritative) ÷ authoritative over closed days: estimate (usage × price table) ${formatUsd(d.estimate_same_days_micro_usd ?? 0)}, authoritative (${d.authoritative_source}) ${formatUsd(d.authoritative_micro_usd ?? 0)}. Warns above 5%.`}
        />
      )}
    </section>
  );
}

export function KeyDetailView({ id }: { id: number }) {
  const state = useLoad(() => api.keyDetail(id), [id]);
  const now = useNodeNow();
  return (
    <LoadState state={state} what="the key">
      {(d) => (
        <>
          <div className="page-head">
            <div>
              <a href="#/keys" className="small">
                ← Keys
              </a>
              <h1>
                {d.key.name || `Key ${d.key.id}`} <code className="masked">{displayKey(d.key.masked_key)}</code>
              </h1>
              <p className="muted small">
                Added {formatTime(unixOf(d.key.added_at) ?? 0)} · expires {formatTime(unixOf(d.key.expires_at) ?? 0)}
                {d.key.retired_at && ` · retired ${formatTime(unixOf(d.key.retired_at) ?? 0)}`}
              </p>
            </div>
            <button type="button" onClick={state.reload}>
              Refresh
            </button>
          </div>
          <Figures d={d} />
          <section className="card" aria-labelledby="key-plot-title">
            <h2 id="key-plot-title">Cost of this key over time</h2>
            {now != null && <CostChart key={`${id}-${d.key.spent_micro_usd}-${d.key.nodes}-${d.key.status}`} keyId={id} now={now} label={`Cost of ${d.key.name}`} />}
          </section>
          <div className="two-col">
            <section className="card" aria-labelledby="key-nodes-title">
              <h2 id="key-nodes-title">Nodes ({formatInt(d.nodes.length)})</h2>
              {d.nodes.length === 0 ? <Empty>No node holds this key yet.</Empty> : <NodesTable nodes={d.nodes} showKey={false} />}
            </section>
            <section className="card" aria-labelledby="key-models-title">
              <h2 id="key-models-title">Usage by model</h2>
              {d.usage_by_model.length === 0 ? (
                <Empty>No usage recorded for this key yet.</Empty>
              ) : (
                <div className="table-wrap">
                  <table>
                    <thead>
                      <tr>
                        <th scope="col">Model</th>
                        <th scope="col" className="num">Input tokens</th>
                        <th scope="col" className="num">Output tokens</th>
                        <th scope="col" className="num">Cost</th>
                      </tr>
                    </thead>
                    <tbody>
                      {d.usage_by_model.map((m) => (
                        <tr key={m.model}>
                          <td>
                            <code>{m.model}</code>
                          </td>
                          <td className="num">{formatInt(m.input_tokens)}</td>
                          <td className="num">{formatInt(m.output_tokens)}</td>
                          <td className="num">{formatUsdAdaptive(m.cost_micro_usd)}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              )}
            </section>
          </div>
        </>
      )}
    </LoadState>
  );
}
