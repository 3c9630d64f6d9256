// The key-issuer's dashboard API (docs/http-api.md): every call is a POST of `{"Call": arg}` to
// `<base>/api`, where <base> is the process id the node serves the app under.

export type KeyStatus = 'active' | 'retired' | 'removed';

export interface KeyView {
  id: number;
  name: string;
  masked_key: string;
  status: KeyStatus;
  retired_reason: string | null;
  retired_at: string | null;
  admin_api_retirement: string | null;
  api_key_id: string | null;
  workspace_id: string | null;
  unresolved_reason: string | null;
  added_at: string;
  expires_at: string;
  budget_micro_usd: number;
  spent_micro_usd: number;
  node_cap: number | null;
  nodes: number;
  eligible: boolean;
  /** Why an active key is not handed to new nodes. */
  not_issued_because: string | null;
  /** The key's status in the organization at the last read (`not found` when absent). */
  org_status: string | null;
  org_expires_at: string | null;
  /** The last failure to set a retired key's Admin API status. */
  retirement_error: string | null;
  retirement_needs_operator: boolean;
  /** Just added and being looked up in the organization's keys; not issued until that is done. */
  matching: boolean;
}

export interface NodeView {
  node: string;
  key_id: number;
  key_name: string;
  masked_key: string;
  issued_at: string;
  cost_micro_usd: number;
}

export interface NodesPage {
  total: number;
  nodes: NodeView[];
}

export interface JoinEvent {
  t: number;
  node: string;
  key: number;
}

export interface CostSeries {
  key: number | null;
  source: string;
  t: number[];
  v: number[];
  joins: JoinEvent[];
  joins_total: number;
  total_micro_usd: number;
}

export interface ModelUsage {
  model: string;
  cost_micro_usd: number;
  input_tokens: number;
  output_tokens: number;
}

export interface KeyDetail {
  key: KeyView;
  nodes: NodeView[];
  usage_by_model: ModelUsage[];
  burn_rate_micro_usd_per_hour: number;
  budget_runs_out_in_secs: number | null;
  authoritative_micro_usd: number | null;
  estimate_same_days_micro_usd: number | null;
  drift_basis_points: number | null;
  drift_warning: boolean;
  authoritative_source: string | null;
  estimate_source: string;
}

export interface KeyRunway {
  id: number;
  name: string;
  spent_micro_usd: number;
  budget_micro_usd: number;
  burn_rate_micro_usd_per_hour: number;
  budget_runs_out_in_secs: number | null;
}

export interface Overview {
  now: string;
  spent_today_micro_usd: number;
  spent_this_month_micro_usd: number;
  spent_total_micro_usd: number;
  active_keys: number;
  historical_keys: number;
  eligible_keys: number;
  nodes_onboarded: number;
  cost_per_node_micro_usd: number | null;
  burn_rate_micro_usd_per_hour: number;
  keys: KeyRunway[];
}

export interface ModelPrices {
  input: number;
  output: number;
  cache_write_5m: number;
  cache_write_1h: number;
  cache_read: number;
}

export interface PriceEntry {
  model_prefix: string;
  label: string;
  prices: ModelPrices;
}

export interface PriceTable {
  entries: PriceEntry[];
  web_search_per_thousand: number;
  /** Batch and long-context rates; kept as the node sent them when the table is edited. */
  [other: string]: unknown;
}

export interface Settings extends IssuancePolicySettings {
  admin_key_set: boolean;
  admin_key_prefix: string | null;
  admin_api_base_url: string;
  poll_interval_secs: number;
  default_lifetime_days: number;
  default_budget_micro_usd: number;
  default_node_cap: number | null;
  retire_to: 'inactive' | 'archived';
  price_table: PriceTable;
  p2p_requests_per_minute: number;
  issue_unmatched_keys: boolean;
  workspace_per_key: boolean;
  archive_workspace_on_retire: boolean;
  audit_retention_days: number;
}

export interface WorkspaceView {
  id: string;
  name: string;
  created_at: string;
  archived_at: string | null;
  key: number | null;
  next_step: string;
}

export interface PollError {
  at: string;
  message: string;
  needs_operator: boolean;
}

export interface PollerStatus {
  admin_key_set: boolean;
  last_poll_started: string | null;
  last_success: string | null;
  next_poll: string | null;
  last_error: PollError | null;
  skipped_rows: number;
  polls_total: number;
  analytics_available: boolean | null;
  analytics_note: string | null;
}

export interface Status {
  now: string;
  poller: PollerStatus;
  poller_reachable: boolean;
  active_keys: number;
  historical_keys: number;
  pending_admin_api_retirements: number;
  unresolved_keys: number;
  unmatched: KeyAttention[];
  retirement_errors: KeyAttention[];
  missing_in_organization: KeyAttention[];
  unknown_models: { model: string; message: string }[];
}

export interface KeyAttention {
  key: number;
  name: string;
  message: string;
  needs_operator: boolean;
}

export interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  action: string;
  detail: string;
  outcome: string;
}

export interface AuditPage {
  entries: AuditEntry[];
  next_before_seq: number | null;
}

export interface CheckResult {
  ok: boolean;
  message: string;
}

/** A check the issuer runs in the background (`TestKey`, `TestConnection`), read with `GetCheck`. */
export interface Check {
  id: number;
  started_at: string;
  finished_at: string | null;
  outcome: { Key: CheckResult } | { Connection: CheckResult } | { Failed: string } | null;
}

/** How often a running check is read again, and for how long at most. */
const CHECK_POLL_MS = 1000;
const CHECK_GIVE_UP_MS = 10 * 60 * 1000;

/** Starts a check and follows it until it has an outcome (the node gives one request 15 s; a
 * check through the Admin API can take longer). */
async function followCheck(start: () => Promise<Check>): Promise<CheckResult> {
  let check = await start();
  const deadline = Date.now() + CHECK_GIVE_UP_MS;
  while (check.outcome === null) {
    if (Date.now() > deadline) throw new ApiError('The check is still running: look at Status, or try again later.', 0);
    await new Promise((resolve) => window.setTimeout(resolve, CHECK_POLL_MS));
    check = await call<Check>('GetCheck', check.id);
  }
  const outcome = check.outcome;
  if ('Failed' in outcome) throw new ApiError(outcome.Failed, 502);
  return 'Key' in outcome ? outcome.Key : outcome.Connection;
}

/** The node answered with its login page: the session is gone. */
export class LoggedOutError extends Error {
  constructor() {
    super('Your node session has ended. Log in to your node to continue.');
    this.name = 'LoggedOutError';
  }
}

/** The API refused or failed a call; `message` is the issuer's explanation. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** `/<process id>/`: the first path segment of the page, where the node serves this app. */
export function basePath(pathname: string = window.location.pathname): string {
  const first = pathname.split('/').filter(Boolean)[0];
  return first ? `/${first}/` : '/';
}

let onLoggedOut: () => void = () => {};

/** Registers what the app does when any call finds the session gone. */
export function setLoggedOutHandler(handler: () => void) {
  onLoggedOut = handler;
}

/** Calls `name` with `arg`. Unwraps `{"Ok": ...}`, throws `ApiError` on `{"Err": ...}`. */
export async function call<T>(name: string, arg: unknown = null, opts: { unwrap?: boolean } = {}): Promise<T> {
  let response: Response;
  try {
    response = await fetch(`${basePath()}api`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ [name]: arg }),
      credentials: 'same-origin',
    });
  } catch {
    throw new ApiError('The node did not answer. Check that it is running and reachable.', 0);
  }
  const type = response.headers.get('content-type') ?? '';
  const text = await response.text();
  if (type.includes('text/html') || /^\s*<(!doctype|html)/i.test(text)) {
    onLoggedOut();
    throw new LoggedOutError();
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ApiError(`The node answered ${response.status} with something other than JSON.`, response.status);
  }
  if (body && typeof body === 'object' && !Array.isArray(body)) {
    const obj = body as Record<string, unknown>;
    if ('Err' in obj && Object.keys(obj).length === 1) throw new ApiError(String(obj.Err), response.status);
    if ('Ok' in obj && Object.keys(obj).length === 1 && opts.unwrap !== false) return obj.Ok as T;
  }
  if (!response.ok) throw new ApiError(`The node answered ${response.status}.`, response.status);
  return body as T;
}

export const api = {
  listKeys: () => call<KeyView[]>('ListKeys'),
  addKey: (body: { secret: string; name: string; lifetime_days?: number; budget_usd?: string; node_cap?: number | null }) =>
    call<KeyView>('AddKey', body),
  retireKey: (id: number) => call<KeyView>('RetireKey', id),
  removeKey: (id: number) => call<KeyView>('RemoveKey', id),
  matchKey: (id: number, apiKeyId: string) => call<KeyView>('MatchKey', { key: id, api_key_id: apiKeyId }),
  prepareWorkspace: (name: string) => call<WorkspaceView>('PrepareWorkspace', { name }),
  listWorkspaces: () => call<WorkspaceView[]>('ListWorkspaces'),
  testKey: (id: number) => followCheck(() => call<Check>('TestKey', id)),
  keyDetail: (id: number) => call<KeyDetail>('KeyDetail', id),
  listNodes: (q: { search?: string | null; key?: number | null; offset?: number; limit?: number }) =>
    call<NodesPage>('ListNodes', { search: q.search || null, key: q.key ?? null, offset: q.offset ?? 0, limit: q.limit ?? 100 }),
  costSeries: (q: { key: number | null; from: number | null; to: number | null; max_points: number }) =>
    call<CostSeries>('CostSeries', q),
  overview: () => call<Overview>('Overview'),
  settings: () => call<Settings>('GetSettings'),
  updateSettings: (changes: Record<string, unknown>) => call<Settings>('UpdateSettings', changes),
  setAdminKey: (adminKey: string) => call<Settings>('SetAdminKey', { admin_key: adminKey }),
  clearAdminKey: () => call<Settings>('ClearAdminKey'),
  testConnection: () => followCheck(() => call<Check>('TestConnection')),
  status: () => call<Status>('Status'),
  pollNow: () => call<null>('PollNow'),
  audit: (beforeSeq: number | null) => call<AuditPage>('AuditLog', { before_seq: beforeSeq, limit: 100 }),
};

// ----- issuance policy: who may get a key (docs/http-api.md, "Issuance policy" and "Requests") -----

export type PolicyMode = 'open' | 'allowlist' | 'approval';

/** The policy part of Settings; `allowlist` and `denylist` hold node names and `*.suffix` patterns. */
export interface IssuancePolicySettings {
  issuance_policy: PolicyMode;
  allowlist: string[];
  denylist: string[];
}

export type RequestStatus = 'pending' | 'approved' | 'denied';

export interface NodeRequest {
  node: string;
  status: RequestStatus;
  requested_at: string;
  decided_at: string | null;
  holds_key: boolean;
}

export interface RequestsPage {
  total: number;
  pending_total: number;
  pending_cap: number;
  requests: NodeRequest[];
}

export const policyApi = {
  listRequests: (q: { status: RequestStatus | null; offset?: number; limit?: number }) =>
    call<RequestsPage>('ListRequests', { status: q.status, offset: q.offset ?? 0, limit: q.limit ?? 100 }),
  approveNode: (node: string) => call<NodeRequest>('ApproveNode', node),
  denyNode: (node: string) => call<NodeRequest>('DenyNode', node),
};

// ----- CSV exports (docs/http-api.md, "Export") -----

export type ExportKind = 'key_costs' | 'nodes' | 'audit';
export type ExportGranularity = 'hour' | 'day';

export interface ExportQuery {
  what: ExportKind;
  /** Key costs only. */
  granularity?: ExportGranularity;
  /** Key costs and nodes: one key only. */
  key?: number | null;
}

export interface ExportChunk {
  /** Whole CSV lines; the first chunk opens with the header line. */
  csv: string;
  rows: number;
  next_cursor: string | null;
}

/**
 * Pages an export to its end with `fetchChunk` (one call per chunk), reporting the rows so far.
 * Answers the chunks' texts in order; the caller joins them (a Blob takes the parts as they are).
 */
export async function collectExport(
  fetchChunk: (cursor: string | null) => Promise<ExportChunk>,
  onProgress: (rows: number) => void = () => {},
): Promise<string[]> {
  const parts: string[] = [];
  let rows = 0;
  let cursor: string | null = null;
  do {
    const chunk: ExportChunk = await fetchChunk(cursor);
    if (chunk.next_cursor != null && chunk.next_cursor === cursor) throw new ApiError('The export did not advance.', 0);
    parts.push(chunk.csv);
    rows += chunk.rows;
    onProgress(rows);
    cursor = chunk.next_cursor;
  } while (cursor != null);
  return parts;
}

export const exportApi = {
  chunk: (q: ExportQuery, cursor: string | null) =>
    call<ExportChunk>('Export', { what: q.what, granularity: q.granularity ?? 'hour', key: q.key ?? null, cursor }),
  /**
   * The whole export as a CSV file: UTF-8 with a byte order mark, so that spreadsheet apps read
   * names in any script correctly (the API's chunks carry none).
   */
  csvFile: async (q: ExportQuery, onProgress?: (rows: number) => void): Promise<Blob> => {
    const parts = await collectExport((cursor) => exportApi.chunk(q, cursor), onProgress);
    return new Blob(['\uFEFF', ...parts], { type: 'text/csv;charset=utf-8' });
  },
};

// ----- alerts (docs/http-api.md, "Alerts") -----

export type AlertSeverity = 'warning' | 'critical';
export const ALERT_KINDS = ['budget', 'expires-soon', 'pool-empty', 'pool-low', 'admin-key-refused', 'retirement-stuck', 'poller-silent', 'unknown-model'] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];

export interface AlertView {
  /** Stable identity, e.g. `budget:k3:80`. */
  alert: string;
  kind: AlertKind;
  key: number | null;
  severity: AlertSeverity;
  message: string;
  raised_at: string;
  cleared_at: string | null;
}

export interface AlertEntry extends AlertView {
  id: number;
}

export interface WebhookDelivery {
  at: string;
  delivered: boolean;
  outcome: string;
  attempts: number;
}

export interface AlertsPage {
  open: AlertView[];
  history: AlertEntry[];
  next_before_id: number | null;
  webhook_set: boolean;
  webhook_hint: string | null;
  last_delivery: WebhookDelivery | null;
  deliveries_queued: number;
}

export interface AlertSettingsView {
  budget_percents: number[];
  pool_low_below: number;
  webhook_set: boolean;
  webhook_hint: string | null;
}

export interface AlertQuery {
  kind?: AlertKind | null;
  state?: 'open' | 'cleared' | null;
  before_id?: number | null;
  limit?: number;
}

export const alertsApi = {
  list: (q: AlertQuery = {}) => call<AlertsPage>('ListAlerts', { kind: q.kind ?? null, state: q.state ?? null, before_id: q.before_id ?? null, limit: q.limit ?? 100 }),
  /** The open alerts only (the banner): the history page is kept to one row. */
  open: () => call<AlertsPage>('ListAlerts', { limit: 1 }),
  sendTest: () => call<null>('SendTestAlert'),
  /** `changes`: any of budget_percents, pool_low_below, webhook_url (null clears it). */
  update: (changes: { budget_percents?: number[]; pool_low_below?: number; webhook_url?: string | null }) =>
    call<Settings & { alerts: AlertSettingsView }>('UpdateSettings', { alerts: changes }),
  settings: () => call<Settings & { alerts: AlertSettingsView }>('GetSettings'),
};
