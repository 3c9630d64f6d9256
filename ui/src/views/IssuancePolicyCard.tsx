// Settings → Issuance policy: who may get a key (mode, allowlist, denylist). The node validates the
// entries (docs/http-api.md, "Issuance policy") and answers why one is refused.

import { useState, type FormEvent } from 'react';
import { api, type PolicyMode, type Settings } from '../api';
import { errorText, FormResult } from '../ui';

/** One entry per line or separated by commas; blank ones dropped. */
export function parseList(text: string): string[] {
  return text
    .split(/[\n,]/)
    .map((entry) => entry.trim())
    .filter(Boolean);
}

const sameList = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

export function IssuancePolicyCard({ s, onChange }: { s: Settings; onChange: (s: Settings) => void }) {
  const [mode, setMode] = useState<PolicyMode>(s.issuance_policy);
  const [allowlist, setAllowlist] = useState(s.allowlist.join('\n'));
  const [denylist, setDenylist] = useState(s.denylist.join('\n'));
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  const edited = <T,>(set: (v: T) => void) => (v: T) => {
    setSaved(false);
    set(v);
  };

  const save = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    // Send only what changed, so the audit log names what the operator changed.
    const changes: Record<string, unknown> = {};
    if (mode !== s.issuance_policy) changes.issuance_policy = mode;
    if (!sameList(parseList(allowlist), s.allowlist)) changes.allowlist = parseList(allowlist);
    if (!sameList(parseList(denylist), s.denylist)) changes.denylist = parseList(denylist);
    if (Object.keys(changes).length === 0) {
      setSaved(true);
      return;
    }
    try {
      const next = await api.updateSettings(changes);
      // Show the lists as the node stored them (lowercase, no duplicates).
      setAllowlist(next.allowlist.join('\n'));
      setDenylist(next.denylist.join('\n'));
      onChange(next);
      setSaved(true);
    } catch (err) {
      setError(errorText(err));
    }
  };

  return (
    <form className="card form-grid" onSubmit={save} aria-labelledby="policy-title" data-testid="issuance-policy">
      <h2 id="policy-title">Issuance policy</h2>
      <label className="wide">
        Who may get a key
        <select name="issuance_policy" value={mode} onChange={(e) => edited(setMode)(e.target.value as PolicyMode)}>
          <option value="open">open: any node that asks</option>
          <option value="allowlist">allowlist: only the nodes listed below</option>
          <option value="approval">approval: listed nodes, and nodes I approve under Requests</option>
        </select>
        <span className="help">
          A node that already holds a key keeps getting it in every mode, unless it is on the denylist.
        </span>
      </label>
      <label className="wide">
        Allowlist
        <textarea name="allowlist" rows={4} value={allowlist} onChange={(e) => edited(setAllowlist)(e.target.value)} spellCheck={false} placeholder={'alice.os\n*.hypr'} />
        <span className="help">
          One node name or pattern per line. <code>*.os</code> covers every name ending in <code>.os</code>; <code>*</code> only as the
          whole first label. Up to 1,000 entries.
        </span>
      </label>
      <label className="wide">
        Denylist (every mode)
        <textarea name="denylist" rows={3} value={denylist} onChange={(e) => edited(setDenylist)(e.target.value)} spellCheck={false} placeholder="spam.os" />
        <span className="help">
          These nodes are answered “not allowed”, also one that holds a key: it is not sent again, but the node may still use
          the copy it has (retire the key to stop that).
        </span>
      </label>
      <div className="form-actions wide">
        <button className="primary" type="submit">
          Save policy
        </button>
        <FormResult error={error} saved={saved} />
      </div>
    </form>
  );
}
