import { describe, expect, it } from 'vitest';
import {
  displayKey,
  formatAxisTime,
  formatBasisPoints,
  formatDuration,
  formatRelative,
  formatTime,
  formatUsd,
  formatUsdAdaptive,
  maskKey,
  microToUsdString,
  parseUsdInput,
  usdStringToMicro,
} from '../src/format';

describe('money', () => {
  it('formats micro-USD exactly, with grouping and rounding to cents', () => {
    expect(formatUsd(0)).toBe('$0.00');
    expect(formatUsd(5_000_000)).toBe('$5.00');
    expect(formatUsd(1_234_567_890)).toBe('$1,234.57');
    expect(formatUsd(4_999)).toBe('$0.00');
    expect(formatUsd(5_000)).toBe('$0.01');
    expect(formatUsd(-2_500_000)).toBe('−$2.50');
    expect(formatUsd(123_456, 6)).toBe('$0.123456');
  });

  it('does not lose precision on amounts beyond 2^53 µUSD', () => {
    expect(formatUsd(9_007_199_254_740_993n)).toBe('$9,007,199,254.74');
  });

  it('shows small non-zero amounts with enough digits', () => {
    expect(formatUsdAdaptive(0)).toBe('$0.00');
    expect(formatUsdAdaptive(42)).toBe('$0.000042');
    expect(formatUsdAdaptive(8_700)).toBe('$0.0087');
    expect(formatUsdAdaptive(125_000)).toBe('$0.13');
  });

  it('round-trips USD strings and micro-USD without floating point', () => {
    expect(microToUsdString(5_000_000)).toBe('5.00');
    expect(microToUsdString(3_750_000)).toBe('3.75');
    expect(microToUsdString(300_000)).toBe('0.30');
    expect(microToUsdString(80_000)).toBe('0.08');
    expect(microToUsdString(123_456)).toBe('0.123456');
    expect(usdStringToMicro('0.1')).toBe(100_000);
    expect(usdStringToMicro('12.345678')).toBe(12_345_678);
    for (const micro of [0, 1, 10, 99_999, 100_000, 5_000_000, 18_750_000, 987_654_321]) {
      expect(usdStringToMicro(microToUsdString(micro))).toBe(micro);
    }
  });

  it('accepts only plain USD amounts as input', () => {
    expect(parseUsdInput(' 5 ')).toBe('5');
    expect(parseUsdInput('$12.50')).toBe('12.50');
    expect(parseUsdInput('1e3')).toBeNull();
    expect(parseUsdInput('-1')).toBeNull();
    expect(parseUsdInput('0.1234567')).toBeNull();
    expect(parseUsdInput('')).toBeNull();
  });

  it('formats drift in basis points', () => {
    expect(formatBasisPoints(325)).toBe('+3.25%');
    expect(formatBasisPoints(-1205)).toBe('−12.05%');
    expect(formatBasisPoints(0)).toBe('0.00%');
  });
});

describe('time', () => {
  it('formats durations as the two largest units', () => {
    expect(formatDuration(0)).toBe('0 s');
    expect(formatDuration(40)).toBe('40 s');
    expect(formatDuration(3600)).toBe('1 h');
    expect(formatDuration(5 * 3600 + 12 * 60 + 7)).toBe('5 h 12 min');
    expect(formatDuration(3 * 86400 + 4 * 3600 + 59)).toBe('3 d 4 h');
    expect(formatDuration(86400 + 30)).toBe('1 d');
    expect(formatDuration(400 * 86400)).toBe('1 y 35 d');
    expect(formatDuration(-5)).toBe('0 s');
  });

  it('formats times relative to the node clock', () => {
    expect(formatRelative(1000 + 7200, 1000)).toBe('in 2 h');
    expect(formatRelative(1000 - 90, 1000)).toBe('1 min 30 s ago');
    expect(formatRelative(1000, 1000)).toBe('now');
  });

  it('labels axis ticks by their spacing', () => {
    const t = 1_764_000_000; // 2025-11-24 16:00 UTC
    expect(formatAxisTime(t - 16 * 3600, 86400, 30 * 86400)).toBe('2025-11-24');
    expect(formatAxisTime(t, 12 * 3600, 7 * 86400)).toBe('11-24 16:00');
    expect(formatAxisTime(t, 3600, 12 * 3600)).toBe('16:00');
  });

  it('formats absolute times in UTC', () => {
    expect(formatTime(1_764_000_000)).toBe('2025-11-24 16:00 UTC');
    expect(formatTime(1_764_000_007, true)).toBe('2025-11-24 16:00:07 UTC');
  });
});

describe('masking', () => {
  const secret = 'sk-ant-api03-TESTkey0001abcdefghijklmnopqrstuvwxyz0001';

  it('keeps the prefix, the first 3 and the last 4 characters', () => {
    expect(maskKey(secret)).toBe('sk-ant-api03-TES...0001');
    expect(maskKey('sk-ant-admin01-TESTadminkeyabcdefghijklmnop0001')).toBe('sk-ant-admin01-TES...0001');
  });

  it('never shows a short or foreign string in full', () => {
    expect(maskKey('sk-ant-api03-abc')).toBe('sk-ant-api03-…');
    expect(maskKey('hello')).toBe('…');
  });

  it('shows API hints as they are but masks anything that is still a whole key', () => {
    expect(displayKey('sk-ant-api03-TES...0001')).toBe('sk-ant-api03-TES...0001');
    expect(displayKey(secret)).toBe('sk-ant-api03-TES...0001');
    expect(displayKey(null)).toBe('—');
  });
});
