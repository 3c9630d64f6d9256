import { useState } from 'react';
import { api, type KeyAttention, type KeyDetail, type Status } from '../api';
import { formatBasisPoints, formatRelative, formatTime, formatUsd, unixOf } from '../format';
import { Empty, errorText, LoadState, Stat, useLoad } from '../ui';

function When({ at, now }: { at: string | null; now: number }) {
  const t = unixOf(at);
  if (t == null) return <span className="muted">never</span>;
  return (
    <span title={formatTime(t, true)}>
      {formatTime(t)} <span className="muted">({formatRelative(t, now)})</span>
    </span>
  );
}

function Drift() {
  // Drift exists per key whose workspace holds no other pool key; ask each key's detail.
  const state = useLoad(async () => {
    const keys = await api.listKeys();
    // Any matched key may have an authoritative figure (analytics per key, or its own workspace).
    const details = await Promise.all(keys.filter((k) => k.api_key_id).map((k) => api.keyDetail(k.id)));
    return details.filter((d) => d.drift_basis_points != null);
  }, []);
  return (
    <section className="card" aria-labelledby="drift-title">
      <h2 id="drift-title">Estimate vs authoritative cost</h2>
      <p className="muted small">
        Drift = (estimate − authoritative) ÷ authoritative over the same closed days. The authoritative figure is the analytics
        endpoint's per-key cost when the organization has it, else the cost report of a workspace holding only that key. Above
        5% is flagged: check the price table.
      </p>
      <LoadState state={state} what="drift">
        {(rows: KeyDetail[]) =>
          rows.length === 0 ? (
            <Empty>No key has an authoritative cost figure yet (it needs the analytics endpoint or a workspace of its own, and a closed day).</Empty>
          ) : (
            <div className="table-wrap">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Key</th>
                    <th scope="col" className="num">Estimate</th>
                    <th scope="col" className="num">Authoritative</th>
                    <th scope="col">Source</th>
                    <th scope="col" className="num">Drift</th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((d) => (
                    <tr key={d.key.id}>
                      <td>
                        <a href={`#/keys/${d.key.id}`}>{d.key.name}</a>
                      </td>
                      <td className="num">{formatUsd(d.estimate_same_days_micro_usd ?? 0)}</td>
                      <td className="num">{formatUsd(d.authoritative_micro_usd ?? 0)}</td>
                      <td>{d.authoritative_source}</td>
                      <td className={`num ${d.drift_warning ? 'warn' : ''}`}>
                        {formatBasisPoints(d.drift_basis_points ?? 0)}
                        {d.drift_warning ? ' ⚠' : ''}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )
        }
      </LoadState>
    </section>
  );
}

/** Keys the operator should look at; `needs_operator` items are marked as needing action. */
function Attention({ title, items, testId }: { title: string; items: KeyAttention[]; testId: string }) {
  if (items.length === 0) return null;
  return (
    <section className="card" data-testid={testId} aria-label={title}>
      <h2>{title}</h2>
      <ul>
        {items.map((i) => (
          <li key={i.key} className={i.needs_operator ? 'warn' : undefined}>
            <a href={`#/keys/${i.key}`}>{i.name}</a>: {i.needs_operator && <strong>needs you — </strong>}
            {i.message}
          </li>
        ))}
      </ul>
    </section>
  );
}

export function StatusView() {
  const state = useLoad(api.status, [], 30);
  const [pollMessage, setPollMessage] = useState<{ ok: boolean; text: string } | null>(null);
  const pollNow = async () => {
    setPollMessage(null);
    try {
      await api.pollNow();
      setPollMessage({ ok: true, text: 'Poll started. Refresh in a moment to see its result.' });
      window.setTimeout(state.reload, 1500);
    } catch (e) {
      setPollMessage({ ok: false, text: errorText(e) });
    }
  };
  return (
    <>
      <div className="page-head">
        <div>
          <h1>Status</h1>
          <p className="muted small">Refreshes every 30 s while this page is open.</p>
        </div>
        <div className="form-actions">
          <button type="button" className="primary" onClick={pollNow}>
            Poll now
          </button>
          <button type="button" onClick={state.reload}>
            Refresh
          </button>
        </div>
      </div>
      {pollMessage && (
        <div className={`note ${pollMessage.ok ? 'ok' : 'error'}`} role="status">
          {pollMessage.text}
        </div>
      )}
      <LoadState state={state} what="status">
        {(s: Status) => {
          const now = unixOf(s.now) ?? Math.floor(Date.now() / 1000);
          const p = s.poller;
          return (
            <>
              {!s.poller_reachable && (
                <div className="note error" role="alert">
                  The cost-poller did not answer the last call. Usage is not being fetched.
                </div>
              )}
              {!p.admin_key_set && (
                <div className="note warn-note" role="status">
                  No admin key is set: set one under <a href="#/settings">Settings</a> to poll usage and cost.
                </div>
              )}
              <section className="card" aria-labelledby="poller-title">
                <h2 id="poller-title">Cost poller</h2>
                <dl className="facts">
                  <dt>Last successful poll</dt>
                  <dd data-testid="last-success">
                    <When at={p.last_success} now={now} />
                  </dd>
                  <dt>Last poll started</dt>
                  <dd>
                    <When at={p.last_poll_started} now={now} />
                  </dd>
                  <dt>Next poll</dt>
                  <dd>
                    <When at={p.next_poll} now={now} />
                  </dd>
                  <dt>Last error</dt>
                  <dd data-testid="last-error">
                    {p.last_error ? (
                      <span className={p.last_error.needs_operator ? 'warn' : undefined}>
                        {p.last_error.message} <span className="muted">— {formatTime(unixOf(p.last_error.at) ?? 0)}</span>
                      </span>
                    ) : (
                      <span className="muted">none</span>
                    )}
                  </dd>
                  <dt>Polls so far</dt>
                  <dd>{p.polls_total}</dd>
                  <dt>Analytics (per-key cost)</dt>
                  <dd data-testid="analytics">
                    {p.analytics_available == null ? (
                      <span className="muted">not asked yet</span>
                    ) : p.analytics_available ? (
                      'in use'
                    ) : (
                      <span className="muted">{p.analytics_note}</span>
                    )}
                  </dd>
                  <dt>Usage rows without a key</dt>
                  <dd title="Usage from the Console Workbench carries no API key id and is not attributed.">{p.skipped_rows}</dd>
                </dl>
              </section>
              <section className="stats" aria-label="Pool state">
                <Stat label="Active keys" value={s.active_keys} />
                <Stat label="Retired keys" value={s.historical_keys} />
                <Stat label="Retirements waiting for the Admin API" value={s.pending_admin_api_retirements} />
                <Stat label="Keys without an Admin API id" value={s.unresolved_keys} />
              </section>
              <Attention title="Retirements the Admin API has not confirmed" items={s.retirement_errors} testId="retirement-errors" />
              <Attention title="Keys not matched to an Admin API id" items={s.unmatched} testId="unmatched-keys" />
              <Attention title="Keys missing from the organization's list" items={s.missing_in_organization} testId="missing-keys" />
              {s.unknown_models.length > 0 && (
                <section className="card" data-testid="unknown-models" aria-labelledby="unknown-models-title">
                  <h2 id="unknown-models-title">Models without a price</h2>
                  <ul>
                    {s.unknown_models.map((m) => (
                      <li key={m.model} className="warn">
                        {m.message} <a href="#/settings">in Settings</a>
                      </li>
                    ))}
                  </ul>
                </section>
              )}
              <Drift />
            </>
          );
        }}
      </LoadState>
    </>
  );
}
