// Small shared pieces: data loading, loading/empty/error states, confirmation, figures.

import { useCallback, useEffect, useRef, useState, type InputHTMLAttributes, type ReactNode } from 'react';
import { api, ApiError, LoggedOutError } from './api';
import { formatUsd, formatUsdAdaptive } from './format';

export interface Loaded<T> {
  data: T | null;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/** Runs `load` now and whenever `deps` change; `reload()` runs it again; with `refreshSecs`, also
 * every so often while the page is visible. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[], refreshSecs?: number): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    let cancelled = false;
    setLoading(true);
    loadRef
      .current()
      .then((d) => {
        if (!cancelled) {
          setData(d);
          setError(null);
        }
      })
      .catch((e) => !cancelled && setError(e))
      .finally(() => !cancelled && setLoading(false));
    return () => {
      cancelled = true;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  useEffect(() => {
    if (!refreshSecs) return;
    const timer = window.setInterval(() => document.visibilityState === 'visible' && reload(), refreshSecs * 1000);
    return () => window.clearInterval(timer);
  }, [refreshSecs, reload]);
  return { data, error, loading, reload };
}

export function errorText(error: unknown): string {
  if (error instanceof LoggedOutError || error instanceof ApiError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}

export function ErrorNote({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
  if (error instanceof LoggedOutError) return null; // the app shows the login banner
  return (
    <div className="note error" role="alert">
      <span>{errorText(error)}</span>
      {onRetry && (
        <button type="button" className="link" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <div className="loading" role="status" aria-live="polite">
      <span className="spinner" aria-hidden="true" /> Loading {what}…
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="empty">{children}</div>;
}

/** Renders loading / error / content for a `useLoad` result. */
export function LoadState<T>({ state, what, children }: { state: Loaded<T>; what: string; children: (data: T) => ReactNode }) {
  if (state.data != null) {
    return (
      <>
        {state.error != null && <ErrorNote error={state.error} onRetry={state.reload} />}
        {children(state.data)}
      </>
    );
  }
  if (state.error != null) return <ErrorNote error={state.error} onRetry={state.reload} />;
  return <Loading what={what} />;
}

/** An "i" button that shows how a figure is computed: on hover (title) and, for keyboard and
 * screen-reader users, on activation. */
export function Hint({ text, about }: { text: string; about: string }) {
  const [open, setOpen] = useState(false);
  return (
    <span className="hint">
      <button type="button" className="hint-mark" title={text} aria-label={`How ${about} is computed`} aria-expanded={open} onClick={() => setOpen(!open)}>
        i
      </button>
      {open && (
        <span className="hint-text" role="note">
          {text}
        </span>
      )}
    </span>
  );
}

export function Stat({ label, value, hint, testId }: { label: string; value: ReactNode; hint?: string; testId?: string }) {
  return (
    <div className="stat" data-testid={testId}>
      <div className="stat-label">
        {label}
        {hint && <Hint text={hint} about={label.toLowerCase()} />}
      </div>
      <div className="stat-value">{value}</div>
    </div>
  );
}

/** A modal confirmation; `onConfirm` may fail, and its error is shown in the dialog. */
export function Confirm({
  title,
  body,
  confirmLabel,
  danger,
  onConfirm,
  onClose,
}: {
  title: string;
  body: ReactNode;
  confirmLabel: string;
  danger?: boolean;
  onConfirm: () => Promise<unknown>;
  onClose: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open) dialog.showModal();
  }, []);
  return (
    <dialog ref={ref} className="dialog" onClose={onClose} aria-labelledby="confirm-title">
      <h2 id="confirm-title">{title}</h2>
      <div className="dialog-body">{body}</div>
      {error != null && <ErrorNote error={error} />}
      <div className="dialog-actions">
        <button type="button" onClick={() => ref.current?.close()} disabled={busy}>
          Cancel
        </button>
        <button
          type="button"
          className={danger ? 'danger' : 'primary'}
          disabled={busy}
          onClick={async () => {
            setBusy(true);
            try {
              await onConfirm();
              ref.current?.close();
            } catch (e) {
              // A lost login is shown by the page's banner, which the modal would hide.
              if (e instanceof LoggedOutError) ref.current?.close();
              else setError(e);
            } finally {
              setBusy(false);
            }
          }}
        >
          {busy ? 'Working…' : confirmLabel}
        </button>
      </div>
    </dialog>
  );
}

export function StatusBadge({ status }: { status: string }) {
  return <span className={`badge badge-${status}`}>{status}</span>;
}

export function SpendBar({ spent, budget }: { spent: number; budget: number }) {
  const pct = budget > 0 ? Math.min(100, (spent / budget) * 100) : 0;
  const level = pct >= 90 ? 'high' : pct >= 60 ? 'mid' : 'low';
  return (
    <div className="spendbar" role="meter" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(pct)} aria-label="Budget spent">
      <div className={`spendbar-fill ${level}`} style={{ width: `${pct}%` }} />
    </div>
  );
}

let clockSkewSecs: number | null = null;

/** The node's clock in unix seconds (the node may run on a different clock than the browser). */
export function useNodeNow(): number | null {
  const [skew, setSkew] = useState<number | null>(clockSkewSecs);
  useEffect(() => {
    let cancelled = false;
    api
      .status()
      .then((s) => {
        const at = Date.parse(s.now);
        if (Number.isNaN(at)) return;
        clockSkewSecs = Math.round((at - Date.now()) / 1000);
        if (!cancelled) setSkew(clockSkewSecs);
      })
      .catch(() => {}); // an unreachable node shows in the view's own error state
    return () => {
      cancelled = true;
    };
  }, []);
  return skew == null ? null : Math.floor(Date.now() / 1000) + skew;
}

/** Spend against budget: a bar and the two amounts. */
export function SpendCell({ spent, budget }: { spent: number; budget: number }) {
  return (
    <div className="spend-cell">
      <SpendBar spent={spent} budget={budget} />
      <span>
        {formatUsdAdaptive(spent)} / {formatUsd(budget)}
      </span>
    </div>
  );
}

/** What a form's submit did: its error, or "Saved." */
export function FormResult({ error, saved, savedText = 'Saved.' }: { error: string | null; saved: boolean; savedText?: string }) {
  return (
    <>
      {error && (
        <span className="field-error" role="alert">
          {error}
        </span>
      )}
      {saved && (
        <span className="ok-text" role="status">
          {savedText}
        </span>
      )}
    </>
  );
}

/** A field for a key secret: masked, and kept out of autofill and password managers. */
export function SecretInput(props: InputHTMLAttributes<HTMLInputElement>) {
  return <input {...props} type="password" autoComplete="new-password" spellCheck={false} data-1p-ignore data-lpignore="true" />;
}
