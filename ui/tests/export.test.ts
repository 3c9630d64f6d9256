import { describe, expect, it } from 'vitest';
import { collectExport, type ExportChunk } from '../src/api';
import { exportFileName } from '../src/views/ExportButton';

describe('collectExport', () => {
  it('follows the cursor to the end, in order, counting rows', async () => {
    const chunks: Record<string, ExportChunk> = {
      start: { csv: 'a,b\r\n1,2\r\n', rows: 1, next_cursor: 'c:1:7200' },
      'c:1:7200': { csv: '3,4\r\n5,6\r\n', rows: 2, next_cursor: null },
    };
    const asked: (string | null)[] = [];
    const progress: number[] = [];
    const parts = await collectExport(async (cursor) => {
      asked.push(cursor);
      return chunks[cursor ?? 'start'];
    }, (rows) => progress.push(rows));
    expect(parts.join('')).toBe('a,b\r\n1,2\r\n3,4\r\n5,6\r\n');
    expect(asked).toEqual([null, 'c:1:7200']);
    expect(progress).toEqual([1, 3]);
  });

  it('stops on a cursor that does not advance', async () => {
    await expect(collectExport(async () => ({ csv: '', rows: 0, next_cursor: 'x' }))).rejects.toThrow('did not advance');
  });
});

describe('exportFileName', () => {
  const day = new Date('2026-11-24T23:30:00Z');
  it('names what, the period of cost rows, and the UTC day', () => {
    expect(exportFileName('key_costs', 'hour', day)).toBe('key-costs-hourly-2026-11-24.csv');
    expect(exportFileName('key_costs', 'day', day)).toBe('key-costs-daily-2026-11-24.csv');
    expect(exportFileName('nodes', 'hour', day)).toBe('nodes-2026-11-24.csv');
    expect(exportFileName('audit', 'day', day)).toBe('audit-log-2026-11-24.csv');
  });
});
