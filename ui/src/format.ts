// Formatting of money, time and keys. Money arrives as integer micro-USD and is formatted with
// integer arithmetic (BigInt), never through floating-point sums.

const MICRO = 1_000_000n;

function groupThousands(digits: string): string {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Rounds `micro` µUSD to `decimals` places (half away from zero) and formats as `$1,234.56`. */
export function formatUsd(micro: number | bigint, decimals = 2): string {
  let value = BigInt(micro);
  const negative = value < 0n;
  if (negative) value = -value;
  const scale = 10n ** BigInt(6 - decimals);
  const rounded = (value + scale / 2n) / scale; // in units of 10^-decimals USD
  const unit = 10n ** BigInt(decimals);
  const whole = groupThousands((rounded / unit).toString());
  const frac = decimals > 0 ? '.' + (rounded % unit).toString().padStart(decimals, '0') : '';
  return `${negative && rounded !== 0n ? '−' : ''}$${whole}${frac}`;
}

/** Like `formatUsd`, but shows small non-zero amounts with enough digits to be seen. */
export function formatUsdAdaptive(micro: number | bigint): string {
  const abs = BigInt(micro) < 0n ? -BigInt(micro) : BigInt(micro);
  if (abs === 0n) return '$0.00';
  if (abs < 10_000n) return formatUsd(micro, abs < 100n ? 6 : 4);
  return formatUsd(micro, 2);
}

/** Micro-USD as an exact decimal string (`"5.00"`, `"0.123456"`) for forms. */
export function microToUsdString(micro: number | bigint): string {
  const value = BigInt(micro);
  const sign = value < 0n ? '-' : '';
  const abs = value < 0n ? -value : value;
  const frac = (abs % MICRO).toString().padStart(6, '0').replace(/0{1,4}$/, '');
  return `${sign}${abs / MICRO}.${frac.length < 2 ? frac.padEnd(2, '0') : frac}`;
}

/** Validates a USD amount typed by the operator: digits with at most 6 decimals. */
export function parseUsdInput(text: string): string | null {
  const t = text.trim().replace(/^\$/, '');
  return /^\d{1,12}(\.\d{1,6})?$/.test(t) ? t : null;
}

/** A validated USD string (`parseUsdInput`) as integer micro-USD, exactly. */
export function usdStringToMicro(usd: string): number {
  const [whole, frac = ''] = usd.split('.');
  return Number(BigInt(whole) * MICRO + BigInt(frac.padEnd(6, '0')));
}

/** A duration in seconds as the two largest units: `3 d 4 h`, `5 h 12 min`, `40 s`. */
export function formatDuration(totalSecs: number): string {
  const secs = Math.max(0, Math.floor(totalSecs));
  const units: [string, number][] = [
    ['y', 365 * 86400],
    ['d', 86400],
    ['h', 3600],
    ['min', 60],
    ['s', 1],
  ];
  for (let i = 0; i < units.length; i++) {
    const [name, size] = units[i];
    if (secs < size) continue;
    const n = Math.floor(secs / size);
    const rest = secs - n * size;
    const next = units[i + 1];
    if (next && rest >= next[1]) return `${n} ${name} ${Math.floor(rest / next[1])} ${next[0]}`;
    return `${n} ${name}`;
  }
  return '0 s';
}

/** `in 3 d 4 h` / `5 h ago` relative to `now` (both unix seconds). */
export function formatRelative(at: number, now: number): string {
  const delta = at - now;
  if (Math.abs(delta) < 1) return 'now';
  return delta > 0 ? `in ${formatDuration(delta)}` : `${formatDuration(-delta)} ago`;
}

/** Unix seconds from an RFC 3339 string (null when absent or unreadable). */
export function unixOf(rfc3339: string | null | undefined): number | null {
  if (!rfc3339) return null;
  const ms = Date.parse(rfc3339);
  return Number.isNaN(ms) ? null : Math.floor(ms / 1000);
}

const pad = (n: number) => String(n).padStart(2, '0');

/** `2026-11-24 10:05 UTC`: one unambiguous zone, the one the node's days and months use. */
export function formatTime(unixSecs: number, withSeconds = false): string {
  const d = new Date(unixSecs * 1000);
  const base = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  return `${base}${withSeconds ? ':' + pad(d.getUTCSeconds()) : ''} UTC`;
}

/** Axis label for a time tick, given the spacing of ticks and the visible span (seconds). */
export function formatAxisTime(unixSecs: number, tickStepSecs: number, spanSecs: number): string {
  const d = new Date(unixSecs * 1000);
  const date = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  if (tickStepSecs >= 86400) return date;
  return spanSecs > 86400 ? `${date.slice(5)} ${time}` : time;
}

const FULL_KEY = /sk-ant-[a-z]+\d*-[A-Za-z0-9_-]{8,}/;

/** How a key secret is shown once stored: prefix, first 3 and last 4 characters. */
export function maskKey(secret: string): string {
  const s = secret.trim();
  const m = /^(sk-ant-[a-z]+\d*-)(.*)$/.exec(s);
  if (!m) return '…';
  const body = m[2];
  if (body.length < 8) return `${m[1]}…`;
  return `${m[1]}${body.slice(0, 3)}...${body.slice(-4)}`;
}

/** Shows a key hint from the API; anything that still looks like a whole key is masked here too. */
export function displayKey(masked: string | null | undefined): string {
  if (!masked) return '—';
  return masked.includes('...') || masked.includes('…') || !FULL_KEY.test(masked) ? masked : maskKey(masked);
}

export function formatInt(n: number): string {
  return groupThousands(String(Math.trunc(n)));
}

/** Basis points as a signed percentage: `+3.25%`. */
export function formatBasisPoints(bp: number): string {
  const sign = bp > 0 ? '+' : bp < 0 ? '−' : '';
  const abs = Math.abs(bp);
  return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')}%`;
}

/** Share of budget spent, 0–100, for the spend bar (display only). */
export function percentOf(spent: number, budget: number): number {
  if (budget <= 0) return spent > 0 ? 100 : 0;
  return Math.min(100, Math.max(0, (spent / budget) * 100));
}
