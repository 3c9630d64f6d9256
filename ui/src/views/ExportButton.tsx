import { useState } from 'react';
import { exportApi, type ExportGranularity, type ExportKind } from '../api';
import { formatInt } from '../format';
import { errorText } from '../ui';

const FILE_STEMS: Record<ExportKind, string> = { key_costs: 'key-costs', nodes: 'nodes', audit: 'audit-log' };

/** `key-costs-hourly-2026-11-24.csv`, `nodes-2026-11-24.csv`: what, period (key costs) and the UTC day. */
export function exportFileName(what: ExportKind, granularity: ExportGranularity, now: Date = new Date()): string {
  const period = what === 'key_costs' ? (granularity === 'day' ? '-daily' : '-hourly') : '';
  return `${FILE_STEMS[what]}${period}-${now.toISOString().slice(0, 10)}.csv`;
}

/** Hands `blob` to the browser as a download named `name`. */
function download(blob: Blob, name: string) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  // The browser has taken the file once the click is handled.
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * "Export CSV": pages through the export (a year of hourly costs is several calls), shows the
 * rows fetched so far, and downloads the file. Key costs offer hour or day rows.
 */
export function ExportButton({ what, keyId = null }: { what: ExportKind; keyId?: number | null }) {
  const [granularity, setGranularity] = useState<ExportGranularity>('hour');
  const [rows, setRows] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);
  const busy = rows != null;

  const run = async () => {
    setRows(0);
    setError(null);
    try {
      const file = await exportApi.csvFile({ what, granularity, key: keyId }, setRows);
      download(file, exportFileName(what, granularity));
    } catch (e) {
      setError(errorText(e));
    } finally {
      setRows(null);
    }
  };

  return (
    <span className="export" data-testid={`export-${what}`}>
      {what === 'key_costs' && (
        <label className="inline">
          <span className="sr-only">Cost rows per</span>
          <select value={granularity} disabled={busy} onChange={(e) => setGranularity(e.target.value as ExportGranularity)}>
            <option value="hour">per hour</option>
            <option value="day">per day (UTC)</option>
          </select>
        </label>
      )}
      <button type="button" disabled={busy} onClick={run} title={what === 'nodes' ? 'Attributed costs are estimates' : undefined}>
        {busy ? `Exporting… ${formatInt(rows)} rows` : 'Export CSV'}
      </button>
      {error && (
        <span className="note error" role="alert">
          Export failed: {error}
        </span>
      )}
    </span>
  );
}
