// Settings → Alerts: budget thresholds, the pool-low threshold, and the webhook (write-only: the
// URL lets anyone post to the channel, so only its host is shown), with a test button.

import { useState, type FormEvent } from 'react';
import { alertsApi, type AlertSettingsView } from '../api';
import { FormResult, errorText, useLoad } from '../ui';

/** "50, 80, 95, 100" → [50, 80, 95, 100], or null when it is not a list of whole percentages. */
export function parsePercents(text: string): number[] | null {
  const parts = text.split(/[\s,]+/).filter(Boolean);
  const numbers = parts.map((p) => (/^\d+$/.test(p) ? Number(p) : NaN));
  return numbers.length > 0 && numbers.every((n) => n >= 1 && n <= 100) ? numbers : null;
}

export function AlertSettingsCard() {
  const state = useLoad(alertsApi.settings, []);
  const alerts: AlertSettingsView | undefined = state.data?.alerts;
  if (!alerts) return null;
  return <AlertSettingsForm key={alerts.budget_percents.join(',') + alerts.pool_low_below + alerts.webhook_hint} alerts={alerts} onSaved={state.reload} />;
}

function AlertSettingsForm({ alerts, onSaved }: { alerts: AlertSettingsView; onSaved: () => void }) {
  const [percents, setPercents] = useState(alerts.budget_percents.join(', '));
  const [poolLow, setPoolLow] = useState(String(alerts.pool_low_below));
  const [webhook, setWebhook] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  const [testNote, setTestNote] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const save = async (e: FormEvent) => {
    e.preventDefault();
    setSaved(false);
    const budget_percents = parsePercents(percents);
    if (!budget_percents) return setError('Budget thresholds: whole percentages from 1 to 100, separated by commas.');
    if (!/^\d+$/.test(poolLow.trim())) return setError('Fewer eligible keys than: a whole number (0 turns it off).');
    const changes: Parameters<typeof alertsApi.update>[0] = { budget_percents, pool_low_below: Number(poolLow.trim()) };
    if (webhook.trim()) changes.webhook_url = webhook.trim();
    setBusy(true);
    try {
      await alertsApi.update(changes);
      setWebhook('');
      setError(null);
      setSaved(true);
      onSaved();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  const clearWebhook = async () => {
    setBusy(true);
    try {
      await alertsApi.update({ webhook_url: null });
      onSaved();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  const sendTest = async () => {
    setTestNote(null);
    try {
      await alertsApi.sendTest();
      setTestNote('Test alert sent: it is retried for a while if the webhook fails; the Alerts view shows how it went.');
    } catch (err) {
      setTestNote(errorText(err));
    }
  };

  return (
    <form className="card form-grid" onSubmit={save} aria-labelledby="alerts-settings-title" autoComplete="off" data-testid="alert-settings">
      <h2 id="alerts-settings-title">Alerts</h2>
      <label className="wide">
        Budget thresholds (% of a key's budget)
        <input value={percents} onChange={(e) => setPercents(e.target.value)} inputMode="numeric" placeholder="50, 80, 95, 100" />
      </label>
      <label>
        Alert when fewer eligible keys than
        <input value={poolLow} onChange={(e) => setPoolLow(e.target.value)} inputMode="numeric" aria-describedby="pool-low-help" />
      </label>
      <p id="pool-low-help" className="muted wide">
        0 turns the low-pool alert off; an empty pool always raises one. Keys expiring within 24 h, a refused admin key, a retirement not
        confirmed after an hour, a silent poller and models priced by the fallback rate always raise alerts.
      </p>
      <label className="wide">
        Webhook URL (Slack or Discord incoming webhook; https)
        <input
          value={webhook}
          onChange={(e) => setWebhook(e.target.value)}
          placeholder={alerts.webhook_set ? `set: ${alerts.webhook_hint} (type a new URL to replace it)` : 'https://hooks.slack.com/services/…'}
          spellCheck={false}
          data-testid="webhook-url"
        />
      </label>
      <div className="form-actions wide">
        <button type="submit" disabled={busy}>
          Save alert settings
        </button>
        {alerts.webhook_set && (
          <>
            <button type="button" onClick={sendTest} data-testid="send-test-alert">
              Send test alert
            </button>
            <button type="button" className="danger-text" onClick={clearWebhook} disabled={busy}>
              Remove webhook
            </button>
          </>
        )}
        <FormResult error={error} saved={saved} />
        {testNote && (
          <span role="status" data-testid="test-alert-note">
            {testNote}
          </span>
        )}
      </div>
    </form>
  );
}
