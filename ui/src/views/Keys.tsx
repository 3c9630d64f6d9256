import { useEffect, useState, type FormEvent } from 'react';
import { api, type CheckResult, type KeyView } from '../api';
import { ExportButton } from './ExportButton';
import { displayKey, formatRelative, maskKey, parseUsdInput, unixOf } from '../format';
import { Confirm, Empty, ErrorNote, errorText, Hint, LoadState, SecretInput, SpendCell, StatusBadge, useLoad, useNodeNow } from '../ui';

function AddKeyForm({ onAdded }: { onAdded: (k: KeyView) => void }) {
  const [secret, setSecret] = useState('');
  const [name, setName] = useState('');
  const [lifetime, setLifetime] = useState('');
  const [budget, setBudget] = useState('');
  const [cap, setCap] = useState('');
  const [noCap, setNoCap] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    const body: Parameters<typeof api.addKey>[0] = { secret: secret.trim(), name: name.trim() };
    if (!body.secret.startsWith('sk-ant-api')) return setError('An API key starts with sk-ant-api (an admin key does not belong here).');
    if (!body.name) return setError('Give the key a name, so you can tell keys apart.');
    if (lifetime.trim()) {
      const days = Number(lifetime);
      if (!Number.isInteger(days) || days < 1 || days > 3650) return setError('Lifetime: a whole number of days, 1 to 3650.');
      body.lifetime_days = days;
    }
    if (budget.trim()) {
      const usd = parseUsdInput(budget);
      if (usd == null) return setError('Budget: a USD amount such as 5 or 12.50.');
      body.budget_usd = usd;
    }
    if (noCap) body.node_cap = null;
    else if (cap.trim()) {
      const n = Number(cap);
      if (!Number.isInteger(n) || n < 1) return setError('Node cap: a whole number, at least 1.');
      body.node_cap = n;
    }
    setBusy(true);
    setSecret(''); // the secret leaves the page's state once sent, whatever the answer
    try {
      const key = await api.addKey(body);
      setName('');
      onAdded(key);
    } catch (err) {
      setError(`${errorText(err)} Paste the key again to retry.`);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="card form-grid" onSubmit={submit} aria-labelledby="add-key-title" autoComplete="off">
      <h2 id="add-key-title">Add a key</h2>
      <label className="wide">
        API key
        <SecretInput
          name="secret"
          value={secret}
          onChange={(e) => setSecret(e.target.value)}
          placeholder="sk-ant-api03-…"
          aria-describedby="secret-help"
        />
        <span id="secret-help" className="help">
          {secret.trim().startsWith('sk-ant-api') ? `Will be shown as ${maskKey(secret)}` : 'Stored on this node only; shown masked from now on.'}
        </span>
      </label>
      <label>
        Name
        <input name="name" value={name} onChange={(e) => setName(e.target.value)} placeholder="trial 1" />
      </label>
      <label>
        Lifetime (days)
        <input name="lifetime" inputMode="numeric" value={lifetime} onChange={(e) => setLifetime(e.target.value)} placeholder="default" />
      </label>
      <label>
        Budget (USD)
        <input name="budget" inputMode="decimal" value={budget} onChange={(e) => setBudget(e.target.value)} placeholder="default" />
      </label>
      <label>
        Node cap
        <input name="cap" inputMode="numeric" value={cap} disabled={noCap} onChange={(e) => setCap(e.target.value)} placeholder="default" />
      </label>
      <label className="check">
        <input type="checkbox" checked={noCap} onChange={(e) => setNoCap(e.target.checked)} /> No node cap
      </label>
      <div className="form-actions wide">
        <button className="primary" type="submit" disabled={busy}>
          {busy ? 'Adding…' : 'Add key'}
        </button>
        {error && (
          <span className="field-error" role="alert" data-testid="add-key-error">
            {error}
          </span>
        )}
      </div>
    </form>
  );
}

type Pending = { kind: 'retire' | 'remove'; key: KeyView } | null;

/** The operator names a key's Admin API id when matching by hint found none or several. */
function MatchByHand({ keyView, onMatched }: { keyView: KeyView; onMatched: (k: KeyView) => void }) {
  const [open, setOpen] = useState(false);
  const [id, setId] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  if (!open) {
    return (
      <button type="button" className="link" onClick={() => setOpen(true)}>
        Match by hand
      </button>
    );
  }
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    if (!/^apikey_[A-Za-z0-9_-]+$/.test(id.trim())) return setError('An Admin API key id looks like apikey_01Rj…');
    setBusy(true);
    try {
      onMatched(await api.matchKey(keyView.id, id.trim()));
      setOpen(false);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="inline-form" onSubmit={submit}>
      <input aria-label={`Admin API id of ${keyView.name}`} value={id} onChange={(e) => setId(e.target.value)} placeholder="apikey_…" spellCheck={false} />
      <button type="submit" disabled={busy}>
        {busy ? 'Checking…' : 'Match'}
      </button>
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}

export function KeysView() {
  const state = useLoad(api.listKeys, [], 60);
  // A just-added key is matched in the background: read the table again until it is done.
  const matching = state.data?.some((k) => k.matching) ?? false;
  useEffect(() => {
    if (!matching) return;
    const timer = window.setTimeout(state.reload, 1500);
    return () => window.clearTimeout(timer);
  }, [matching, state.data, state.reload]);
  const [pending, setPending] = useState<Pending>(null);
  const [checks, setChecks] = useState<Record<number, CheckResult | { error: unknown } | 'busy'>>({});
  const [notice, setNotice] = useState<string | null>(null);
  const now = useNodeNow();

  const testKey = async (k: KeyView) => {
    setChecks((c) => ({ ...c, [k.id]: 'busy' }));
    try {
      const r = await api.testKey(k.id);
      setChecks((c) => ({ ...c, [k.id]: r }));
    } catch (error) {
      setChecks((c) => ({ ...c, [k.id]: { error } }));
    }
  };

  return (
    <>
      <div className="page-head">
        <h1>Keys</h1>
        <div className="head-actions">
          <ExportButton what="key_costs" />
          <button type="button" onClick={state.reload}>
            Refresh
          </button>
        </div>
      </div>
      <AddKeyForm
        onAdded={(k) => {
          setNotice(`Added “${k.name}” as ${displayKey(k.masked_key)}.`);
          state.reload();
        }}
      />
      {notice && (
        <div className="note ok" role="status">
          {notice}
        </div>
      )}
      <LoadState state={state} what="keys">
        {(keys) =>
          keys.length === 0 ? (
            <Empty>No keys yet. Add an API key above; nodes that ask this node for a key get one of the active keys.</Empty>
          ) : (
            <div className="table-wrap card">
              <table data-testid="keys-table" className="nowrap-cells">
                <caption className="sr-only">API keys</caption>
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">Key</th>
                    <th scope="col">Status</th>
                    <th scope="col">Nodes / cap</th>
                    <th scope="col">Spend vs budget</th>
                    <th scope="col">Expires</th>
                    <th scope="col">Admin API id</th>
                    <th scope="col">
                      <span className="sr-only">Actions</span>
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {keys.map((k) => {
                    const check = checks[k.id];
                    const expires = unixOf(k.expires_at);
                    return (
                      <tr key={k.id} data-key-id={k.id}>
                        <td>
                          <a href={`#/keys/${k.id}`}>{k.name || `key ${k.id}`}</a>
                        </td>
                        <td>
                          <code className="masked">{displayKey(k.masked_key)}</code>
                        </td>
                        <td>
                          <StatusBadge status={k.status} />
                          {k.retired_reason && <div className="muted small">{k.retired_reason}</div>}
                          {k.admin_api_retirement && <div className="muted small">Admin API: {k.admin_api_retirement}</div>}
                          {k.org_status && k.org_status !== 'active' && k.status === 'active' && (
                            <div className="muted small">organization: {k.org_status}</div>
                          )}
                          {k.not_issued_because && (
                            <div className="muted small" data-testid="not-issued">
                              not issued <Hint text={k.not_issued_because} about="why the key is not issued" />
                            </div>
                          )}
                          {k.retirement_error && (
                            <div className={`small ${k.retirement_needs_operator ? 'field-error' : 'muted'}`} data-testid="retirement-error">
                              {k.retirement_needs_operator ? 'needs you: ' : 'retrying: '}
                              {k.retirement_error}
                            </div>
                          )}
                        </td>
                        <td>
                          {k.nodes} / {k.node_cap ?? '∞'}
                        </td>
                        <td>
                          <SpendCell spent={k.spent_micro_usd} budget={k.budget_micro_usd} />
                        </td>
                        <td className="when">{k.status === 'active' && expires != null && now != null ? formatRelative(expires, now) : <span className="muted">—</span>}</td>
                        <td>
                          {k.api_key_id ? (
                            <code>{k.api_key_id}</code>
                          ) : k.matching ? (
                            <span className="muted" data-testid="matching">
                              matching…
                            </span>
                          ) : (
                            <>
                              <span className="muted">
                                not matched {k.unresolved_reason && <Hint text={k.unresolved_reason} about="why the key is not matched" />}
                              </span>
                              <MatchByHand keyView={k} onMatched={(m) => { setNotice(`Matched “${m.name}” to ${m.api_key_id}.`); state.reload(); }} />
                            </>
                          )}
                        </td>
                        <td className="actions">
                          <div className="row-actions">
                          <button type="button" onClick={() => testKey(k)} disabled={check === 'busy' || k.status === 'removed'}>
                            {check === 'busy' ? 'Testing…' : 'Test key'}
                          </button>
                          {k.status === 'active' && (
                            <button type="button" onClick={() => setPending({ kind: 'retire', key: k })}>
                              Retire
                            </button>
                          )}
                          {k.status !== 'removed' && (
                            <button type="button" className="danger-text" onClick={() => setPending({ kind: 'remove', key: k })}>
                              Remove
                            </button>
                          )}
                          {check && check !== 'busy' && (
                            'error' in check ? (
                              <ErrorNote error={check.error} />
                            ) : (
                              <div className={`note ${check.ok ? 'ok' : 'error'}`} role="status" data-testid="test-key-result">
                                {check.message}
                              </div>
                            )
                          )}
                          </div>
                        </td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          )
        }
      </LoadState>
      {pending && (
        <Confirm
          title={pending.kind === 'retire' ? `Retire “${pending.key.name}”?` : `Remove “${pending.key.name}”?`}
          body={
            pending.kind === 'retire' ? (
              <p>
                No node will be issued this key again, and its Admin API status is set as Settings says (inactive or archived).
                Nodes that hold it keep it until then.
              </p>
            ) : (
              <p>
                The key is retired and its secret erased from this node. Its record, nodes and cost history stay. This cannot be
                undone.
              </p>
            )
          }
          confirmLabel={pending.kind === 'retire' ? 'Retire key' : 'Remove key'}
          danger
          onConfirm={async () => {
            const k = pending.kind === 'retire' ? await api.retireKey(pending.key.id) : await api.removeKey(pending.key.id);
            setNotice(`${pending.kind === 'retire' ? 'Retired' : 'Removed'} “${k.name}”.`);
            state.reload();
          }}
          onClose={() => setPending(null)}
        />
      )}
    </>
  );
}
