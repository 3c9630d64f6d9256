import { describe, expect, it } from 'vitest';
import { parseList } from '../src/views/IssuancePolicyCard';

describe('parseList', () => {
  it('takes one entry per line or comma, trimmed, blanks dropped', () => {
    expect(parseList(' alice.os \n\n*.hypr, bob.os ,\n')).toEqual(['alice.os', '*.hypr', 'bob.os']);
    expect(parseList('')).toEqual([]);
    expect(parseList('  \n , ')).toEqual([]);
  });
});
