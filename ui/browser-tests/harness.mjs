// What every browser test script shares: its settings from the environment (set by the Rust test
// that runs it), checks that name the step they belong to, and a page that records every console
// error, page error and unexpected HTTP error as a problem.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

/** Reads the settings the Rust test `runner` passes in the environment. */
export function settingsFrom(runner) {
  return (name) => {
    const v = process.env[name];
    if (!v) throw new Error(`${name} is not set (this script is run by ${runner})`);
    return v;
  };
}

/** Checks and log lines labelled with the test's name and its current step (`at`). */
export function steps(label) {
  let step = '';
  return {
    at: (name) => {
      step = name;
    },
    log: (msg) => console.log(`${label}: ${msg}`),
    check: (cond, what) => {
      if (!cond) throw new Error(`check failed at "${step}": ${what}`);
    },
  };
}

/** Records the page's problems; a 400 is expected only while `expecting(true)` is in force
 * (refusals a test provokes on purpose). */
export function watchPage(page, problems) {
  let expectRefusal = false;
  const refusal = (text) => expectRefusal && /status of 400/.test(text);
  page.on('console', (m) => m.type() === 'error' && !refusal(m.text()) && problems.push(`console error on ${page.url()}: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`page error on ${page.url()}: ${e.message}`));
  page.on('response', (r) => r.status() >= 400 && !(expectRefusal && r.status() === 400) && problems.push(`HTTP ${r.status()} for ${r.url()}`));
  page.setDefaultTimeout(20_000);
  return {
    expecting: (on) => {
      expectRefusal = on;
    },
  };
}

/** Screenshots into `dir` and navigation to a view of the app at `app`. */
export function viewer(page, app, dir) {
  mkdirSync(dir, { recursive: true });
  return {
    shot: async (name) => page.screenshot({ path: join(dir, `${name}.png`), fullPage: true }),
    go: async (hash) => {
      await page.goto(`${app}#/${hash}`);
      await page.locator('main h1').first().waitFor();
    },
  };
}
