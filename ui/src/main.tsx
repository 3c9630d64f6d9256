import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App';
import './styles.css';

// The node may serve the app at `/<process id>` without the trailing slash; relative asset and
// API paths need it.
if (!window.location.pathname.endsWith('/')) {
  window.history.replaceState(null, '', `${window.location.pathname}/${window.location.search}${window.location.hash}`);
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
