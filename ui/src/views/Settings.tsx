import { useState, type FormEvent } from 'react';
import { api, type CheckResult, type PriceEntry, type Settings, type WorkspaceView } from '../api';
import { displayKey, formatDuration, microToUsdString, parseUsdInput, usdStringToMicro } from '../format';
import { errorText, FormResult, LoadState, SecretInput, useLoad } from '../ui';
import { IssuancePolicyCard } from './IssuancePolicyCard';
import { AlertSettingsCard } from './AlertSettings';

function AdminKeyCard({ s, onChange }: { s: Settings; onChange: (s: Settings) => void }) {
  const [value, setValue] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [test, setTest] = useState<CheckResult | null>(null);

  const run = async (action: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    try {
      await action();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };

  const save = (e: FormEvent) => {
    e.preventDefault();
    if (!value.trim().startsWith('sk-ant-admin')) {
      setError('An admin key starts with sk-ant-admin.');
      return;
    }
    const key = value.trim();
    setValue(''); // the key leaves the page's state at once, whatever the answer
    void run(async () => {
      const next = await api.setAdminKey(key);
      setTest(null);
      onChange(next);
    });
  };

  return (
    <form className="card" onSubmit={save} aria-labelledby="admin-key-title" autoComplete="off">
      <h2 id="admin-key-title">Admin key</h2>
      <p data-testid="admin-key-state">
        {s.admin_key_set ? (
          <>
            Set: <code>{displayKey(s.admin_key_prefix)}</code>
          </>
        ) : (
          <span className="warn">Not set: usage and cost are not polled and retired keys are not deactivated.</span>
        )}
      </p>
      <p className="muted small">
        Write-only: the key goes to the cost-poller and is never shown again, only its prefix. It needs the Admin API
        permission of your Anthropic organization.
      </p>
      <label>
        {s.admin_key_set ? 'Replace admin key' : 'Admin key'}
        <SecretInput name="admin_key" value={value} onChange={(e) => setValue(e.target.value)} placeholder="sk-ant-admin01-…" />
      </label>
      <div className="form-actions">
        <button className="primary" type="submit" disabled={busy || !value}>
          Save admin key
        </button>
        <button
          type="button"
          disabled={busy || !s.admin_key_set}
          onClick={() =>
            run(async () => {
              setTest(await api.testConnection());
            })
          }
        >
          Test connection
        </button>
        {s.admin_key_set && (
          <button type="button" className="danger-text" disabled={busy} onClick={() => run(async () => onChange(await api.clearAdminKey()))}>
            Clear
          </button>
        )}
      </div>
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
      {test && (
        <div className={`note ${test.ok ? 'ok' : 'error'}`} role="status" data-testid="connection-result">
          {test.message}
        </div>
      )}
    </form>
  );
}

function GeneralCard({ s, onChange }: { s: Settings; onChange: (s: Settings) => void }) {
  const [form, setForm] = useState({
    admin_api_base_url: s.admin_api_base_url,
    poll_interval_mins: String(Math.round(s.poll_interval_secs / 60)),
    default_lifetime_days: String(s.default_lifetime_days),
    default_budget_usd: microToUsdString(s.default_budget_micro_usd),
    default_node_cap: s.default_node_cap == null ? '' : String(s.default_node_cap),
    retire_to: s.retire_to,
    p2p_requests_per_minute: String(s.p2p_requests_per_minute),
    issue_unmatched_keys: s.issue_unmatched_keys ? 'yes' : 'no',
    workspace_per_key: s.workspace_per_key ? 'yes' : 'no',
    archive_workspace_on_retire: s.archive_workspace_on_retire ? 'yes' : 'no',
    audit_retention_days: String(s.audit_retention_days),
  });
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  const set = (field: keyof typeof form) => (e: { target: { value: string } }) => {
    setSaved(false);
    setForm({ ...form, [field]: e.target.value });
  };

  const save = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    const mins = Number(form.poll_interval_mins);
    const days = Number(form.default_lifetime_days);
    const rate = Number(form.p2p_requests_per_minute);
    const budget = parseUsdInput(form.default_budget_usd);
    if (!Number.isInteger(mins) || mins < 1) return setError('Poll interval: whole minutes, at least 1.');
    if (!Number.isInteger(days) || days < 1) return setError('Default lifetime: whole days, at least 1.');
    if (budget == null) return setError('Default budget: a USD amount such as 5 or 12.50.');
    if (!Number.isInteger(rate) || rate < 1) return setError('Requests per minute: a whole number, at least 1.');
    const retention = Number(form.audit_retention_days);
    if (!Number.isInteger(retention) || retention < 1 || retention > 3650) return setError('Audit retention: whole days, 1 to 3650.');
    const cap = form.default_node_cap.trim();
    if (cap && (!Number.isInteger(Number(cap)) || Number(cap) < 1)) return setError('Default node cap: a whole number, or empty for no cap.');
    // Send only what changed, so the audit log names what the operator really changed.
    // The form shows whole minutes: an unchanged field keeps the exact seconds already set.
    const wanted: Record<string, unknown> = {
      admin_api_base_url: form.admin_api_base_url.trim(),
      poll_interval_secs: mins === Math.round(s.poll_interval_secs / 60) ? s.poll_interval_secs : mins * 60,
      default_lifetime_days: days,
      default_budget_usd: budget,
      default_node_cap: cap ? Number(cap) : null,
      retire_to: form.retire_to,
      p2p_requests_per_minute: rate,
      issue_unmatched_keys: form.issue_unmatched_keys === 'yes',
      workspace_per_key: form.workspace_per_key === 'yes',
      archive_workspace_on_retire: form.archive_workspace_on_retire === 'yes',
      audit_retention_days: retention,
    };
    const current: Record<string, unknown> = {
      admin_api_base_url: s.admin_api_base_url,
      poll_interval_secs: s.poll_interval_secs,
      default_lifetime_days: s.default_lifetime_days,
      default_budget_usd: microToUsdString(s.default_budget_micro_usd),
      default_node_cap: s.default_node_cap,
      retire_to: s.retire_to,
      p2p_requests_per_minute: s.p2p_requests_per_minute,
      issue_unmatched_keys: s.issue_unmatched_keys,
      workspace_per_key: s.workspace_per_key,
      archive_workspace_on_retire: s.archive_workspace_on_retire,
      audit_retention_days: s.audit_retention_days,
    };
    const changes = Object.fromEntries(
      Object.entries(wanted).filter(([k, v]) =>
        k === 'default_budget_usd' ? usdStringToMicro(v as string) !== s.default_budget_micro_usd : v !== current[k],
      ),
    );
    if (Object.keys(changes).length === 0) {
      setSaved(true);
      return;
    }
    try {
      const next = await api.updateSettings(changes);
      onChange(next);
      setSaved(true);
    } catch (err) {
      setError(errorText(err));
    }
  };

  return (
    <form className="card form-grid" onSubmit={save} aria-labelledby="general-title">
      <h2 id="general-title">Polling and defaults</h2>
      <label className="wide">
        Admin API base URL
        <input name="base_url" value={form.admin_api_base_url} onChange={set('admin_api_base_url')} spellCheck={false} />
        <span className="help">
          https only (plain http for a server on this machine). Changing it clears the admin key: set it again for the new
          server.
        </span>
      </label>
      <label>
        Poll interval (minutes)
        <input name="poll_interval" inputMode="numeric" value={form.poll_interval_mins} onChange={set('poll_interval_mins')} />
        <span className="help">now every {formatDuration(s.poll_interval_secs)}</span>
      </label>
      <label>
        Default lifetime (days)
        <input name="default_lifetime" inputMode="numeric" value={form.default_lifetime_days} onChange={set('default_lifetime_days')} />
      </label>
      <label>
        Default budget (USD)
        <input name="default_budget" inputMode="decimal" value={form.default_budget_usd} onChange={set('default_budget_usd')} />
      </label>
      <label>
        Default node cap
        <input name="default_cap" inputMode="numeric" value={form.default_node_cap} onChange={set('default_node_cap')} placeholder="no cap" />
      </label>
      <label>
        Retired keys become
        <select name="retire_to" value={form.retire_to} onChange={set('retire_to')}>
          <option value="inactive">inactive (can be re-enabled in the Console)</option>
          <option value="archived">archived (permanent)</option>
        </select>
      </label>
      <label>
        Keys not matched to an Admin API id
        <select name="issue_unmatched" value={form.issue_unmatched_keys} onChange={set('issue_unmatched_keys')}>
          <option value="no">are not issued (their spend cannot be tracked)</option>
          <option value="yes">are issued anyway (budget not enforced until matched)</option>
        </select>
      </label>
      <label>
        Workspace per key
        <select name="workspace_per_key" value={form.workspace_per_key} onChange={set('workspace_per_key')}>
          <option value="no">off</option>
          <option value="yes">on: prepare a workspace for each key (its cost report is the key's own)</option>
        </select>
      </label>
      <label>
        When a key in a prepared workspace retires
        <select name="archive_workspace" value={form.archive_workspace_on_retire} onChange={set('archive_workspace_on_retire')}>
          <option value="no">keep the workspace</option>
          <option value="yes">archive the workspace too (stops every key in it)</option>
        </select>
      </label>
      <label>
        Keep the audit log (days)
        <input name="audit_retention" inputMode="numeric" value={form.audit_retention_days} onChange={set('audit_retention_days')} />
      </label>
      <label>
        Key requests per node per minute
        <input name="rate" inputMode="numeric" value={form.p2p_requests_per_minute} onChange={set('p2p_requests_per_minute')} />
      </label>
      <div className="form-actions wide">
        <button className="primary" type="submit">
          Save settings
        </button>
        <FormResult error={error} saved={saved} />
      </div>
    </form>
  );
}

type PriceRow = { model_prefix: string; label: string; input: string; output: string; cache_write_5m: string; cache_write_1h: string; cache_read: string };
const PRICE_FIELDS: [keyof PriceRow, string][] = [
  ['input', 'Input'],
  ['output', 'Output'],
  ['cache_write_5m', 'Cache write 5 m'],
  ['cache_write_1h', 'Cache write 1 h'],
  ['cache_read', 'Cache read'],
];

function rowOf(e: PriceEntry): PriceRow {
  const p = e.prices;
  return {
    model_prefix: e.model_prefix,
    label: e.label,
    input: microToUsdString(p.input),
    output: microToUsdString(p.output),
    cache_write_5m: microToUsdString(p.cache_write_5m),
    cache_write_1h: microToUsdString(p.cache_write_1h),
    cache_read: microToUsdString(p.cache_read),
  };
}

function PriceCard({ s, onChange }: { s: Settings; onChange: (s: Settings) => void }) {
  const [rows, setRows] = useState<PriceRow[]>(() => s.price_table.entries.map(rowOf));
  const [webSearch, setWebSearch] = useState(microToUsdString(s.price_table.web_search_per_thousand));
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  const edit = (i: number, field: keyof PriceRow, value: string) => {
    setSaved(false);
    setRows(rows.map((r, j) => (j === i ? { ...r, [field]: value } : r)));
  };

  const save = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    const entries: PriceEntry[] = [];
    for (const [i, r] of rows.entries()) {
      if (!r.model_prefix.trim()) return setError(`Row ${i + 1}: the model prefix is empty.`);
      const prices: Record<string, number> = {};
      for (const [field, name] of PRICE_FIELDS) {
        const usd = parseUsdInput(r[field]);
        if (usd == null) return setError(`Row ${i + 1} (${r.model_prefix}): ${name} is not a USD amount.`);
        prices[field] = usdStringToMicro(usd);
      }
      entries.push({ model_prefix: r.model_prefix.trim(), label: r.label.trim() || r.model_prefix.trim(), prices: prices as unknown as PriceEntry['prices'] });
    }
    const ws = parseUsdInput(webSearch);
    if (ws == null) return setError('Web search: not a USD amount.');
    try {
      const table = { ...s.price_table, entries, web_search_per_thousand: usdStringToMicro(ws) };
      const next = await api.updateSettings({ price_table: table });
      onChange(next);
      setRows(next.price_table.entries.map(rowOf));
      setSaved(true);
    } catch (err) {
      setError(errorText(err));
    }
  };

  return (
    <form className="card" onSubmit={save} aria-labelledby="prices-title">
      <h2 id="prices-title">Price table</h2>
      <p className="muted small">
        USD per million tokens. A model is priced by the entry with the longest matching prefix, then by family and generation
        in either naming scheme (claude-sonnet-4-5, claude-3-7-sonnet); a model nothing matches is priced at the highest rates
        here and listed on Status. Batch usage costs half; long-context (200k-1M) input and cache ×2, output ×1.5. Saving
        prices all stored usage again.
      </p>
      <div className="table-wrap">
        <table className="price-table">
          <thead>
            <tr>
              <th scope="col">Model prefix</th>
              <th scope="col">Label</th>
              {PRICE_FIELDS.map(([f, name]) => (
                <th scope="col" key={f} className="num">
                  {name}
                </th>
              ))}
              <th scope="col">
                <span className="sr-only">Remove</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r, i) => (
              <tr key={i}>
                <td>
                  <input aria-label={`Row ${i + 1} model prefix`} value={r.model_prefix} onChange={(e) => edit(i, 'model_prefix', e.target.value)} />
                </td>
                <td>
                  <input aria-label={`Row ${i + 1} label`} value={r.label} onChange={(e) => edit(i, 'label', e.target.value)} />
                </td>
                {PRICE_FIELDS.map(([f, name]) => (
                  <td key={f}>
                    <input
                      className="num"
                      inputMode="decimal"
                      aria-label={`${r.model_prefix || `Row ${i + 1}`} ${name}`}
                      value={r[f]}
                      onChange={(e) => edit(i, f, e.target.value)}
                    />
                  </td>
                ))}
                <td>
                  <button type="button" className="danger-text" aria-label={`Remove ${r.model_prefix || `row ${i + 1}`}`} onClick={() => setRows(rows.filter((_, j) => j !== i))}>
                    ✕
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div className="form-actions">
        <button
          type="button"
          onClick={() => setRows([...rows, { model_prefix: '', label: '', input: '0', output: '0', cache_write_5m: '0', cache_write_1h: '0', cache_read: '0' }])}
        >
          Add model
        </button>
        <label className="inline">
          Web search, per 1,000 requests (USD)
          <input inputMode="decimal" value={webSearch} onChange={(e) => setWebSearch(e.target.value)} />
        </label>
        <button className="primary" type="submit">
          Save prices
        </button>
        <FormResult error={error} saved={saved} />
      </div>
    </form>
  );
}

/** Workspace-per-key mode: prepare a workspace through the Admin API, then create the key in it in the Console. */
function WorkspacesCard() {
  const state = useLoad(api.listWorkspaces, []);
  const [name, setName] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [created, setCreated] = useState<WorkspaceView | null>(null);
  const [busy, setBusy] = useState(false);
  const prepare = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    setCreated(null);
    if (!name.trim() || name.trim().length > 40) return setError('Name: 1 to 40 characters.');
    setBusy(true);
    try {
      setCreated(await api.prepareWorkspace(name.trim()));
      setName('');
      state.reload();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section className="card" aria-labelledby="workspaces-title" data-testid="workspaces">
      <h2 id="workspaces-title">Workspaces, one per key</h2>
      <form className="inline-form" onSubmit={prepare}>
        <input aria-label="Workspace name" value={name} onChange={(e) => setName(e.target.value)} placeholder="trial for alice.os" />
        <button type="submit" disabled={busy}>
          {busy ? 'Preparing…' : 'Prepare a workspace'}
        </button>
      </form>
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
      {created && (
        <div className="note ok" role="status">
          Prepared {created.name} ({created.id}): {created.next_step}.
        </div>
      )}
      <LoadState state={state} what="workspaces">
        {(list: WorkspaceView[]) =>
          list.length === 0 ? null : (
            <ul>
              {list.map((w) => (
                <li key={w.id}>
                  <code>{w.id}</code> {w.name}: <span className="muted">{w.next_step}</span>
                </li>
              ))}
            </ul>
          )
        }
      </LoadState>
    </section>
  );
}

export function SettingsView() {
  const state = useLoad(api.settings, []);
  const [current, setCurrent] = useState<Settings | null>(null);
  return (
    <>
      <div className="page-head">
        <h1>Settings</h1>
      </div>
      <LoadState state={state} what="settings">
        {(loaded) => {
          const s = current ?? loaded;
          return (
            <>
              <AdminKeyCard s={s} onChange={setCurrent} />
              <GeneralCard s={s} onChange={setCurrent} />
              <IssuancePolicyCard s={s} onChange={setCurrent} />
              {s.workspace_per_key && <WorkspacesCard />}
              <PriceCard s={s} onChange={setCurrent} />
              <AlertSettingsCard />
            </>
          );
        }}
      </LoadState>
    </>
  );
}
