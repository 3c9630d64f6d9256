// The open alerts, above every view: the operator learns of a budget running out, an empty pool or
// a refused admin key wherever they are in the dashboard. The Alerts view has the history.

import { alertsApi, type AlertView } from './api';
import { useLoad } from './ui';

/** How often the banner asks again (alerts change with polls and the issuer's sweeps). */
const REFRESH_SECS = 30;
/** Alerts listed in the banner; the rest are counted. */
const SHOWN = 3;

export function AlertBanner({ route }: { route: string }) {
  // A new view is a fresh look: ask again.
  const state = useLoad(alertsApi.open, [route], REFRESH_SECS);
  const open: AlertView[] = state.data?.open ?? [];
  if (open.length === 0) return null;
  const critical = open.some((a) => a.severity === 'critical');
  return (
    <div className={`banner alert-banner${critical ? ' critical' : ''}`} role="status" aria-live="polite" data-testid="alert-banner">
      <strong>
        {open.length} open alert{open.length === 1 ? '' : 's'}
      </strong>
      <ul className="alert-banner-list">
        {open.slice(0, SHOWN).map((a) => (
          <li key={a.alert} data-severity={a.severity}>
            {a.message}
          </li>
        ))}
        {open.length > SHOWN && <li className="muted">and {open.length - SHOWN} more</li>}
      </ul>
      <a href="#/alerts">See all alerts</a>
    </div>
  );
}
