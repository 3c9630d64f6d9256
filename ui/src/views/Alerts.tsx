// Alerts: what is open now, the history of every raise with the time it cleared, filtered by kind
// and state, and how the last webhook delivery went.

import { useEffect, useRef, useState } from 'react';
import { ALERT_KINDS, alertsApi, type AlertEntry, type AlertKind, type AlertsPage } from '../api';
import { formatTime, unixOf } from '../format';
import { Empty, ErrorNote, Loading } from '../ui';

const KIND_NAMES: Record<AlertKind, string> = {
  budget: 'Budget threshold',
  'expires-soon': 'Key expires soon',
  'pool-empty': 'No eligible key',
  'pool-low': 'Few eligible keys',
  'admin-key-refused': 'Admin key refused',
  'retirement-stuck': 'Retirement not confirmed',
  'poller-silent': 'Poller silent',
  'unknown-model': 'Unknown model',
};

type StateFilter = '' | 'open' | 'cleared';

function when(rfc3339: string | null): string {
  return rfc3339 ? formatTime(unixOf(rfc3339) ?? 0, true) : '—';
}

export function AlertsView() {
  const [page, setPage] = useState<AlertsPage | null>(null);
  const [history, setHistory] = useState<AlertEntry[]>([]);
  const [kind, setKind] = useState<AlertKind | ''>('');
  const [stateFilter, setStateFilter] = useState<StateFilter>('');
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<unknown>(null);

  // Only the latest request's answer counts (a filter change while a page loads wins).
  const latest = useRef(0);
  const load = async (before: number | null) => {
    const request = ++latest.current;
    setLoading(true);
    try {
      const answer = await alertsApi.list({ kind: kind || null, state: stateFilter || null, before_id: before });
      if (request !== latest.current) return;
      setPage(answer);
      setHistory((old) => (before == null ? answer.history : [...old, ...answer.history]));
      setError(null);
    } catch (e) {
      if (request === latest.current) setError(e);
    } finally {
      if (request === latest.current) setLoading(false);
    }
  };
  useEffect(() => {
    void load(null);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [kind, stateFilter]);

  return (
    <>
      <div className="page-head">
        <h1>Alerts</h1>
        <div className="head-actions">
          <button type="button" onClick={() => load(null)}>
            Refresh
          </button>
        </div>
      </div>
      {error != null && <ErrorNote error={error} onRetry={() => load(null)} />}
      <section className="card" aria-labelledby="open-alerts-title" data-testid="open-alerts">
        <h2 id="open-alerts-title">Open now</h2>
        {page == null && loading && <Loading what="alerts" />}
        {page != null && page.open.length === 0 && <Empty>Nothing needs your attention.</Empty>}
        {page != null && page.open.length > 0 && (
          <ul className="alert-list">
            {page.open.map((a) => (
              <li key={a.alert} data-severity={a.severity}>
                <span className={`badge alert-${a.severity}`}>{a.severity}</span> {a.message}{' '}
                <span className="muted">since {when(a.raised_at)}</span>
              </li>
            ))}
          </ul>
        )}
        {page != null && <WebhookLine page={page} />}
      </section>
      <section className="card" aria-labelledby="alert-history-title">
        <h2 id="alert-history-title">History</h2>
        <div className="filters">
          <label>
            Kind
            <select value={kind} onChange={(e) => setKind(e.target.value as AlertKind | '')} data-testid="alert-kind-filter">
              <option value="">All kinds</option>
              {ALERT_KINDS.map((k) => (
                <option key={k} value={k}>
                  {KIND_NAMES[k]}
                </option>
              ))}
            </select>
          </label>
          <label>
            State
            <select value={stateFilter} onChange={(e) => setStateFilter(e.target.value as StateFilter)} data-testid="alert-state-filter">
              <option value="">Open and cleared</option>
              <option value="open">Open</option>
              <option value="cleared">Cleared</option>
            </select>
          </label>
        </div>
        {history.length === 0 && !loading && error == null && <Empty>No alert matches.</Empty>}
        {history.length > 0 && (
          <div className="table-wrap">
            <table data-testid="alerts-table">
              <thead>
                <tr>
                  <th scope="col">Raised</th>
                  <th scope="col">Cleared</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Alert</th>
                </tr>
              </thead>
              <tbody>
                {history.map((a) => (
                  <tr key={a.id} data-kind={a.kind}>
                    <td className="nowrap">{when(a.raised_at)}</td>
                    <td className="nowrap">{a.cleared_at ? when(a.cleared_at) : <span className={`badge alert-${a.severity}`}>open</span>}</td>
                    <td>{KIND_NAMES[a.kind] ?? a.kind}</td>
                    <td>{a.message}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        {page?.next_before_id != null && (
          <div className="pager">
            <button type="button" disabled={loading} onClick={() => load(page.next_before_id)}>
              {loading ? 'Loading…' : 'Older alerts'}
            </button>
          </div>
        )}
      </section>
    </>
  );
}

function WebhookLine({ page }: { page: AlertsPage }) {
  if (!page.webhook_set) {
    return <p className="muted">Alerts are shown here only: set a webhook under Settings → Alerts to have them posted to Slack or Discord.</p>;
  }
  const last = page.last_delivery;
  return (
    <p className="muted" data-testid="webhook-status">
      Posted to {page.webhook_hint}.{' '}
      {last && (last.delivered ? `Last delivery ${when(last.at)}: delivered.` : `Last delivery ${when(last.at)}: ${last.outcome}.`)}
      {page.deliveries_queued > 0 && ` ${page.deliveries_queued} waiting.`}
    </p>
  );
}
