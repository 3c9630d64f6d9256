import { describe, expect, it } from 'vitest';
import { parsePercents } from '../src/views/AlertSettings';

describe('parsePercents', () => {
  it('reads whole percentages separated by commas or spaces', () => {
    expect(parsePercents('50, 80, 95, 100')).toEqual([50, 80, 95, 100]);
    expect(parsePercents('25 75')).toEqual([25, 75]);
  });
  it('refuses anything else', () => {
    expect(parsePercents('')).toBeNull();
    expect(parsePercents('0, 50')).toBeNull();
    expect(parsePercents('101')).toBeNull();
    expect(parsePercents('12.5')).toBeNull();
    expect(parsePercents('fifty')).toBeNull();
  });
});
