// The dashboard shell: navigation, hash routes, and the "logged out" state shared by every view.

import { useEffect, useState } from 'react';
import { setLoggedOutHandler } from './api';
import { OverviewView } from './views/Overview';
import { KeysView } from './views/Keys';
import { KeyDetailView } from './views/KeyDetail';
import { NodesView } from './views/Nodes';
import { SettingsView } from './views/Settings';
import { StatusView } from './views/Status';
import { AuditView } from './views/Audit';
import { AlertsView } from './views/Alerts';
import { AlertBanner } from './AlertBanner';
import { RequestsView } from './views/Requests';

const NAV: [string, string][] = [
  ['overview', 'Overview'],
  ['keys', 'Keys'],
  ['nodes', 'Nodes'],
  ['requests', 'Requests'],
  ['settings', 'Settings'],
  ['status', 'Status'],
  ['audit', 'Audit log'],
  ['alerts', 'Alerts'],
];

function currentRoute(): string[] {
  const parts = window.location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  return parts.length ? parts : ['overview'];
}

export function App() {
  const [route, setRoute] = useState(currentRoute);
  const [loggedOut, setLoggedOut] = useState(false);

  useEffect(() => {
    const onHash = () => setRoute(currentRoute());
    window.addEventListener('hashchange', onHash);
    setLoggedOutHandler(() => setLoggedOut(true));
    return () => window.removeEventListener('hashchange', onHash);
  }, []);

  useEffect(() => {
    const title = NAV.find(([id]) => id === route[0])?.[1] ?? 'Key';
    document.title = `${title} · API Key Manager`;
    // Move focus to the new view's heading, for keyboard and screen-reader users.
    document.getElementById('main')?.focus({ preventScroll: true });
  }, [route]);

  const [section, param] = route;
  let view;
  switch (section) {
    case 'keys':
      view = param ? <KeyDetailView id={Number(param)} /> : <KeysView />;
      break;
    case 'nodes':
      view = <NodesView />;
      break;
    case 'requests':
      view = <RequestsView />;
      break;
    case 'settings':
      view = <SettingsView />;
      break;
    case 'status':
      view = <StatusView />;
      break;
    case 'alerts':
      view = <AlertsView />;
      break;
    case 'audit':
      view = <AuditView />;
      break;
    default:
      view = <OverviewView />;
  }

  return (
    <div className="shell">
      <a className="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById('main')?.focus(); }}>
        Skip to content
      </a>
      <header className="topbar">
        <div className="brand">
          <span className="brand-mark" aria-hidden="true">◆</span> API Key Manager
        </div>
        <nav aria-label="Sections">
          <ul>
            {NAV.map(([id, name]) => (
              <li key={id}>
                <a href={`#/${id}`} aria-current={section === id || (id === 'overview' && !NAV.some(([n]) => n === section)) ? 'page' : undefined}>
                  {name}
                </a>
              </li>
            ))}
          </ul>
        </nav>
      </header>
      {loggedOut && (
        <div className="banner" role="alert" data-testid="logged-out">
          <strong>Log in to your node.</strong> Your session has ended, so the node refuses the dashboard's requests.{' '}
          <button type="button" onClick={() => window.location.reload()}>
            Log in again
          </button>
        </div>
      )}
      {!loggedOut && <AlertBanner route={route.join('/')} />}
      <main id="main" tabIndex={-1}>
        {view}
      </main>
    </div>
  );
}
