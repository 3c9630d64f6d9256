import { describe, expect, it } from 'vitest';
import { clusterAt, clusterLabel, clusterMarkers, placeLabels } from '../src/markers';

const identity = (t: number) => t;

describe('marker clustering', () => {
  it('keeps markers apart when they are far enough', () => {
    const clusters = clusterMarkers([0, 20, 40], identity, 10);
    expect(clusters.map((c) => [c.start, c.end])).toEqual([
      [0, 1],
      [1, 2],
      [2, 3],
    ]);
  });

  it('groups markers closer than the gap into one cluster', () => {
    const clusters = clusterMarkers([0, 3, 6, 9, 30, 31], identity, 10);
    expect(clusters.map((c) => [c.px, c.start, c.end])).toEqual([
      [0, 0, 4],
      [30, 4, 6],
    ]);
  });

  it('never makes a cluster wider than the gap, however many markers', () => {
    const times = Array.from({ length: 10_000 }, (_, i) => i * 0.1);
    const clusters = clusterMarkers(times, identity, 14);
    let covered = 0;
    for (const c of clusters) {
      expect(times[c.end - 1] - times[c.start]).toBeLessThan(14);
      covered += c.end - c.start;
    }
    expect(covered).toBe(times.length);
    expect(clusters.length).toBeLessThanOrEqual(Math.ceil(1000 / 14) + 1);
  });

  it('skips markers outside the visible pixels', () => {
    const clusters = clusterMarkers([-50, 5, 50, 500], identity, 10, 0, 100);
    expect(clusters.map((c) => c.start)).toEqual([1, 2]);
  });

  it('labels a cluster with its first node and how many more', () => {
    const names = ['alice.os', 'bob.os', 'carol.os'];
    expect(clusterLabel(names, { px: 0, start: 0, end: 1 })).toBe('alice.os');
    expect(clusterLabel(names, { px: 0, start: 0, end: 3 })).toBe('alice.os +2');
  });

  it('finds the cluster under the pointer', () => {
    const clusters = clusterMarkers([0, 100, 200], identity, 10);
    expect(clusterAt(clusters, 104, 7)?.start).toBe(1);
    expect(clusterAt(clusters, 150, 7)).toBeNull();
    expect(clusterAt(clusters, -3, 7)?.start).toBe(0);
    expect(clusterAt([], 10, 7)).toBeNull();
  });
});

describe('label placement', () => {
  it('stacks overlapping labels on rows and drops what does not fit', () => {
    expect(placeLabels([0, 10, 20, 30], [50, 50, 50, 50], 3, 4)).toEqual([0, 1, 2, -1]);
    expect(placeLabels([0, 60, 120], [50, 50, 50], 1, 4)).toEqual([0, 0, 0]);
  });
});
