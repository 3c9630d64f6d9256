import { useEffect, useRef, useState } from 'react';
import { api, type AuditEntry } from '../api';
import { ExportButton } from './ExportButton';
import { formatTime, unixOf } from '../format';
import { Empty, ErrorNote, Loading } from '../ui';

export function AuditView() {
  const [entries, setEntries] = useState<AuditEntry[]>([]);
  const [next, setNext] = useState<number | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<unknown>(null);
  const [filter, setFilter] = useState('');

  // Only the latest request's answer counts (a refresh while an older page loads wins).
  const latest = useRef(0);
  const load = async (before: number | null) => {
    const request = ++latest.current;
    setLoading(true);
    try {
      const page = await api.audit(before);
      if (request !== latest.current) return;
      setEntries((old) => (before == null ? page.entries : [...old, ...page.entries]));
      setNext(page.next_before_seq);
      setError(null);
    } catch (e) {
      if (request === latest.current) setError(e);
    } finally {
      if (request === latest.current) setLoading(false);
    }
  };
  useEffect(() => {
    void load(null);
  }, []);

  const needle = filter.trim().toLowerCase();
  const shown = needle
    ? entries.filter((e) => [e.actor, e.action, e.detail, e.outcome].some((f) => f.toLowerCase().includes(needle)))
    : entries;

  return (
    <>
      <div className="page-head">
        <h1>Audit log</h1>
        <div className="head-actions">
          <ExportButton what="audit" />
          <button type="button" onClick={() => load(null)}>
            Refresh
          </button>
        </div>
      </div>
      <div className="card">
        <label className="search">
          Filter loaded entries
          <input type="search" value={filter} onChange={(e) => setFilter(e.target.value)} placeholder="actor, action or detail" />
        </label>
        {error != null && <ErrorNote error={error} onRetry={() => load(null)} />}
        {entries.length === 0 && loading && <Loading what="the audit log" />}
        {entries.length === 0 && !loading && error == null && <Empty>Nothing has happened yet.</Empty>}
        {shown.length > 0 && (
          <div className="table-wrap">
            <table data-testid="audit-table">
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">Who</th>
                  <th scope="col">What</th>
                  <th scope="col">Detail</th>
                  <th scope="col">Outcome</th>
                </tr>
              </thead>
              <tbody>
                {shown.map((e) => (
                  <tr key={e.seq}>
                    <td className="nowrap">{formatTime(unixOf(e.at) ?? 0, true)}</td>
                    <td>{e.actor}</td>
                    <td>{e.action}</td>
                    <td>{e.detail}</td>
                    <td>{e.outcome}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        {needle && shown.length === 0 && entries.length > 0 && <Empty>No loaded entry matches “{filter}”.</Empty>}
        {next != null && (
          <div className="pager">
            <button type="button" disabled={loading} onClick={() => load(next)}>
              {loading ? 'Loading…' : 'Older entries'}
            </button>
          </div>
        )}
      </div>
    </>
  );
}
