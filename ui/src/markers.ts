// Node-join markers on a time axis: joins close together (in pixels) are grouped into one
// cluster, so labels stay readable however many nodes join at once.

export interface Cluster {
  /** Pixel position of the cluster (its first join). */
  px: number;
  /** Index range [start, end) into the sorted join list. */
  start: number;
  end: number;
}

/**
 * Groups sorted join times into clusters no wider than `minGapPx` pixels, skipping joins outside
 * [minPx, maxPx]. `toPx` maps a time to a pixel position and must be increasing.
 */
export function clusterMarkers(
  times: ArrayLike<number>,
  toPx: (t: number) => number,
  minGapPx: number,
  minPx = -Infinity,
  maxPx = Infinity,
): Cluster[] {
  const clusters: Cluster[] = [];
  let current: Cluster | null = null;
  for (let i = 0; i < times.length; i++) {
    const px = toPx(times[i]);
    if (px < minPx || px > maxPx || Number.isNaN(px)) {
      if (current) {
        clusters.push(current);
        current = null;
      }
      continue;
    }
    if (current && px - current.px < minGapPx) {
      current.end = i + 1;
    } else {
      if (current) clusters.push(current);
      current = { px, start: i, end: i + 1 };
    }
  }
  if (current) clusters.push(current);
  return clusters;
}

/** The label of a cluster: the node's name, or the first name and how many more. */
export function clusterLabel(names: ArrayLike<string>, c: Cluster): string {
  const count = c.end - c.start;
  return count === 1 ? names[c.start] : `${names[c.start]} +${count - 1}`;
}

/**
 * Places labels of the given pixel widths on up to `rows` rows so that none overlap; a label that
 * fits nowhere is dropped (its marker line stays, and the hover list still names it).
 * Returns the row of each label, or -1 when dropped.
 */
export function placeLabels(positions: number[], widths: number[], rows: number, gapPx = 4): number[] {
  const rowEnds: number[] = new Array(rows).fill(-Infinity);
  return positions.map((px, i) => {
    for (let r = 0; r < rows; r++) {
      if (px >= rowEnds[r] + gapPx) {
        rowEnds[r] = px + widths[i];
        return r;
      }
    }
    return -1;
  });
}

/** The cluster nearest to `px` within `tolerancePx`, or null. */
export function clusterAt(clusters: Cluster[], px: number, tolerancePx: number): Cluster | null {
  let best: Cluster | null = null;
  let bestDist = tolerancePx;
  // Clusters are sorted by px: binary search, then look at the neighbours.
  let lo = 0;
  let hi = clusters.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (clusters[mid].px < px) lo = mid + 1;
    else hi = mid;
  }
  for (const i of [lo - 1, lo]) {
    const c = clusters[i];
    if (!c) continue;
    const d = Math.abs(c.px - px);
    if (d <= bestDist) {
      best = c;
      bestDist = d;
    }
  }
  return best;
}
