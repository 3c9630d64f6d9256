// Dashboard render benchmark in headless Chromium (run by `cargo xtask bench` against a devnode
// preloaded with a year of hourly cost for 100 keys and 10,000 issued nodes). Measures with the
// Performance API and prints figures; goals are printed, never enforced.

import { launchChromium } from './chromium.mjs';

const APP = process.env.DASHBOARD_URL;
const PASSWORD = process.env.NODE_PASSWORD;
if (!APP || !PASSWORD) throw new Error('DASHBOARD_URL and NODE_PASSWORD must be set (cargo xtask bench sets them)');
const RUNS = 5;
const ZOOMS = 20;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const max = (xs) => Math.max(...xs);

const browser = await launchChromium();
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(APP);
  await page.fill('input[type=password]', PASSWORD);
  await Promise.all([page.waitForEvent('load'), page.keyboard.press('Enter')]);
  await page.locator('h1', { hasText: 'Overview' }).waitFor();

  // First render: from navigation start to the first plot drawn with its data and markers.
  const firstRender = [];
  const firstDraw = [];
  let markers = 0;
  let points = 0;
  for (let i = 0; i < RUNS; i++) {
    await page.goto(`${APP}?run=${i}#/overview`);
    const m = await page.evaluate(
      () =>
        new Promise((resolve) => {
          const poll = () => {
            const drawn = performance.getEntriesByName('cost-chart-drawn-with-data');
            if (drawn.length) {
              const d = drawn[0];
              resolve({ at: d.startTime, draw: d.detail.drawMs, markers: d.detail.markers, points: d.detail.points });
            } else setTimeout(poll, 5);
          };
          poll();
        }),
    );
    firstRender.push(m.at);
    firstDraw.push(m.draw);
    markers = m.markers;
    points = m.points;
  }

  // Zoom: a wheel step over the plot, to the end of the redraw it causes (before any refetch).
  await page.waitForTimeout(500);
  const zooms = [];
  const refetched = [];
  const box = await page.locator('[data-testid=cost-chart] .u-over').boundingBox();
  for (let i = 0; i < ZOOMS; i++) {
    const r = await page.evaluate(
      ({ x, y, deltaY }) =>
        new Promise((resolve) => {
          const over = document.querySelector('[data-testid=cost-chart] .u-over');
          const before = performance.getEntriesByName('cost-chart-draw').length;
          const t0 = performance.now();
          over.dispatchEvent(new WheelEvent('wheel', { clientX: x, clientY: y, deltaY, bubbles: true, cancelable: true }));
          const wait = (count, done) => {
            const draws = performance.getEntriesByName('cost-chart-draw');
            if (draws.length >= count) done(draws[count - 1]);
            else setTimeout(() => wait(count, done), 1);
          };
          // The zoom's own redraw, then the redraw at full resolution after the refetch.
          wait(before + 1, (zoomDraw) =>
            wait(before + 2, (refetchDraw) => resolve({ zoom: zoomDraw.startTime + zoomDraw.detail.drawMs - t0, refetch: refetchDraw.startTime + refetchDraw.detail.drawMs - t0 })),
          );
        }),
      { x: box.x + box.width * 0.7, y: box.y + box.height / 2, deltaY: i % 4 < 2 ? -200 : 200 },
    );
    zooms.push(r.zoom);
    refetched.push(r.refetch);
  }

  console.log('');
  console.log(`| dashboard measure (headless Chromium, ${points} plotted points, ${markers} node markers) | figure | goal |`);
  console.log('| --- | --- | --- |');
  console.log(`| overview first render, navigation → plot drawn with data (median of ${RUNS}) | ${median(firstRender).toFixed(0)} ms (max ${max(firstRender).toFixed(0)}) | < 500 ms |`);
  console.log(`| of which the plot's own draw | ${median(firstDraw).toFixed(1)} ms | — |`);
  console.log(`| zoom (wheel) redraw (median of ${ZOOMS}) | ${median(zooms).toFixed(1)} ms (max ${max(zooms).toFixed(1)}) | < 50 ms |`);
  console.log(`| zoom, then refetch at full resolution and redraw (median of ${ZOOMS}) | ${median(refetched).toFixed(0)} ms | — |`);
} finally {
  await browser.close();
}
