// Requests: nodes waiting for the operator's approval (issuance policy `approval`), and the
// decisions taken. Approve or deny a pending node; change a decision; decide a node in advance.

import { useState, type FormEvent } from 'react';
import { api, policyApi, type NodeRequest, type RequestStatus } from '../api';
import { formatTime, unixOf } from '../format';
import { Empty, errorText, LoadState, StatusBadge, useLoad } from '../ui';

const PAGE = 100;

const FILTERS: [RequestStatus | null, string][] = [
  ['pending', 'Pending'],
  ['approved', 'Approved'],
  ['denied', 'Denied'],
  [null, 'All'],
];

function when(rfc3339: string | null): string {
  return rfc3339 ? formatTime(unixOf(rfc3339) ?? 0, true) : '—';
}

/** Approve / deny buttons of one row; the other decision stays available to change one's mind. */
function DecisionButtons({ request, onDecided }: { request: NodeRequest; onDecided: () => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const decide = async (approve: boolean) => {
    setBusy(true);
    setError(null);
    try {
      await (approve ? policyApi.approveNode(request.node) : policyApi.denyNode(request.node));
      onDecided();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="row-actions">
      {request.status !== 'approved' && (
        <button type="button" className="primary" disabled={busy} onClick={() => decide(true)} aria-label={`Approve ${request.node}`}>
          Approve
        </button>
      )}
      {request.status !== 'denied' && (
        <button type="button" className="danger-text" disabled={busy} onClick={() => decide(false)} aria-label={`Deny ${request.node}`}>
          Deny
        </button>
      )}
      {error && <p className="note error" role="alert">{error}</p>}
    </div>
  );
}

function RequestsTable({ requests, onDecided }: { requests: NodeRequest[]; onDecided: () => void }) {
  return (
    <div className="table-wrap">
      <table data-testid="requests-table">
        <thead>
          <tr>
            <th scope="col">Node</th>
            <th scope="col">Status</th>
            <th scope="col">First asked</th>
            <th scope="col">Decided</th>
            <th scope="col">Action</th>
          </tr>
        </thead>
        <tbody>
          {requests.map((r) => (
            <tr key={r.node} data-node={r.node}>
              <td>
                {r.node}
                {r.holds_key && <span className="muted small"> · holds a key</span>}
              </td>
              <td>
                <StatusBadge status={r.status} />
              </td>
              <td className="nowrap">{when(r.requested_at)}</td>
              <td className="nowrap">{when(r.decided_at)}</td>
              <td>
                <DecisionButtons request={r} onDecided={onDecided} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** Approve or deny a node before it asks. */
function DecideInAdvance({ onDecided }: { onDecided: () => void }) {
  const [node, setNode] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = (approve: boolean) => async (e?: FormEvent) => {
    e?.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await (approve ? policyApi.approveNode(node.trim()) : policyApi.denyNode(node.trim()));
      setNode('');
      onDecided();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="inline-form" onSubmit={submit(true)} aria-label="Decide a node in advance">
      <label className="search">
        Decide a node before it asks
        <input name="decide_node" value={node} onChange={(e) => setNode(e.target.value)} placeholder="node name, e.g. alice.os" spellCheck={false} />
      </label>
      <button type="submit" disabled={busy || !node.trim()}>
        Approve
      </button>
      <button type="button" className="danger-text" disabled={busy || !node.trim()} onClick={() => void submit(false)()}>
        Deny
      </button>
      {error && <p className="note error" role="alert">{error}</p>}
    </form>
  );
}

export function RequestsView() {
  const [status, setStatus] = useState<RequestStatus | null>('pending');
  const [offset, setOffset] = useState(0);
  const state = useLoad(() => policyApi.listRequests({ status, offset, limit: PAGE }), [status, offset], 15);
  const settings = useLoad(api.settings, []);
  const mode = settings.data?.issuance_policy;
  return (
    <>
      <div className="page-head">
        <h1>Requests</h1>
        <button type="button" onClick={state.reload}>
          Refresh
        </button>
      </div>
      {mode && mode !== 'approval' && (
        <p className="note" data-testid="policy-mode-note">
          The issuance policy is <strong>{mode}</strong>: decisions here apply once it is <strong>approval</strong> (Settings).
        </p>
      )}
      <div className="card">
        <div className="filters">
          <div className="segmented" role="group" aria-label="Show requests">
            {FILTERS.map(([value, label]) => (
              <button
                key={label}
                type="button"
                aria-pressed={status === value}
                onClick={() => {
                  setStatus(value);
                  setOffset(0);
                }}
              >
                {label}
              </button>
            ))}
          </div>
        </div>
        <LoadState state={state} what="requests">
          {(page) => (
            <>
              <p className="muted small" aria-live="polite" data-testid="pending-count">
                {page.pending_total} of at most {page.pending_cap} nodes waiting
              </p>
              {page.requests.length === 0 ? (
                <Empty>{status === 'pending' ? 'No node is waiting for approval.' : 'Nothing here yet.'}</Empty>
              ) : (
                <>
                  <RequestsTable requests={page.requests} onDecided={state.reload} />
                  <div className="pager">
                    <button type="button" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
                      Previous
                    </button>
                    <button type="button" disabled={offset + PAGE >= page.total} onClick={() => setOffset(offset + PAGE)}>
                      Next
                    </button>
                  </div>
                </>
              )}
            </>
          )}
        </LoadState>
        <DecideInAdvance onDecided={state.reload} />
      </div>
    </>
  );
}
