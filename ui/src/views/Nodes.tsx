import { useEffect, useState } from 'react';
import { api, type NodeView } from '../api';
import { ExportButton } from './ExportButton';
import { displayKey, formatInt, formatTime, formatUsdAdaptive, unixOf } from '../format';
import { HINTS } from '../hints';
import { Empty, Hint, LoadState, useLoad } from '../ui';

const PAGE = 100;

export function NodesTable({ nodes, showKey = true }: { nodes: NodeView[]; showKey?: boolean }) {
  return (
    <div className="table-wrap">
      <table data-testid="nodes-table">
        <thead>
          <tr>
            <th scope="col">Node</th>
            {showKey && <th scope="col">Key</th>}
            <th scope="col">Issued</th>
            <th scope="col" className="num">
              Attributed cost <Hint text={HINTS.attributed} about="attributed cost" />
            </th>
          </tr>
        </thead>
        <tbody>
          {nodes.map((n) => (
            <tr key={n.node}>
              <td>{n.node}</td>
              {showKey && (
                <td>
                  <a href={`#/keys/${n.key_id}`}>{n.key_name}</a> <code className="masked">{displayKey(n.masked_key)}</code>
                </td>
              )}
              <td>{formatTime(unixOf(n.issued_at) ?? 0)}</td>
              <td className="num">{formatUsdAdaptive(n.cost_micro_usd)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function NodesView() {
  const [search, setSearch] = useState('');
  const [query, setQuery] = useState('');
  const [offset, setOffset] = useState(0);
  const [keyFilter, setKeyFilter] = useState<number | null>(null);
  const keys = useLoad(api.listKeys, []);
  useEffect(() => {
    const timer = window.setTimeout(() => {
      setQuery(search.trim());
      setOffset(0);
    }, 250);
    return () => window.clearTimeout(timer);
  }, [search]);
  const state = useLoad(() => api.listNodes({ search: query, key: keyFilter, offset, limit: PAGE }), [query, keyFilter, offset]);
  return (
    <>
      <div className="page-head">
        <h1>Nodes</h1>
        <div className="head-actions">
          <ExportButton what="nodes" keyId={keyFilter} />
          <button type="button" onClick={state.reload}>
            Refresh
          </button>
        </div>
      </div>
      <div className="card">
        <div className="filters">
          <label className="search">
            Search nodes
            <input type="search" value={search} onChange={(e) => setSearch(e.target.value)} placeholder="node name, e.g. alice" />
          </label>
          <label>
            Key
            <select
              value={keyFilter ?? ''}
              onChange={(e) => {
                setKeyFilter(e.target.value ? Number(e.target.value) : null);
                setOffset(0);
              }}
            >
              <option value="">All keys</option>
              {(keys.data ?? []).map((k) => (
                <option key={k.id} value={k.id}>
                  {k.name || `key ${k.id}`} ({k.status})
                </option>
              ))}
            </select>
          </label>
        </div>
        <LoadState state={state} what="nodes">
          {(page) =>
            page.nodes.length === 0 ? (
              <Empty>{query || keyFilter != null ? 'No node matches the search.' : 'No node has been issued a key yet.'}</Empty>
            ) : (
              <>
                <p className="muted small" aria-live="polite">
                  {offset + 1}–{offset + page.nodes.length} of {formatInt(page.total)} nodes, newest first
                </p>
                <NodesTable nodes={page.nodes} />
                <div className="pager">
                  <button type="button" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
                    Newer
                  </button>
                  <button type="button" disabled={offset + PAGE >= page.total} onClick={() => setOffset(offset + PAGE)}>
                    Older
                  </button>
                </div>
              </>
            )
          }
        </LoadState>
      </div>
    </>
  );
}
