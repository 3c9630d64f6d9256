// Browser test of the alerts in Debian's Chromium: the banner of open alerts on every view, the
// Alerts view (open alerts, history, filters), and the alerts section of Settings (webhook, test
// alert), against devnode + fake-admin-api started by `tools/e2e/tests/alerts_browser.rs`, which leaves
// the pool empty (an open critical alert) and runs a webhook receiver. Exits non-zero on the first
// failed check; saves screenshots.

import { join } from 'node:path';
import { launchChromium } from './chromium.mjs';
import { settingsFrom, steps, viewer, watchPage } from './harness.mjs';

const env = settingsFrom('tools/e2e/tests/alerts_browser.rs');
const APP = env('DASHBOARD_URL'); // http://127.0.0.1:P/<process id>/
const PASSWORD = env('NODE_PASSWORD');
const WEBHOOK = env('WEBHOOK_URL');
const NEW_KEY = env('TEST_API_KEY');
const SHOTS = env('SCREENSHOT_DIR');

const { at, log, check } = steps('alerts test');

const browser = await launchChromium();
const problems = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  // The refusal the test provokes on purpose (a bad webhook URL → HTTP 400) is expected; nothing else is.
  const refusals = watchPage(page, problems);
  const { shot, go } = viewer(page, APP, SHOTS);
  const banner = page.getByTestId('alert-banner');

  at('log in to the node');
  await page.goto(APP);
  await page.fill('input[type=password]', PASSWORD);
  await Promise.all([page.waitForEvent('load'), page.keyboard.press('Enter')]);
  await page.locator('h1', { hasText: 'Overview' }).waitFor();

  at('the banner shows the open alert on every view');
  for (const view of ['overview', 'keys', 'nodes', 'settings', 'status', 'audit']) {
    await go(view);
    await banner.getByText('no eligible key left').waitFor();
  }
  check((await banner.getAttribute('class')).includes('critical'), 'an empty pool is shown as critical');
  check((await banner.textContent()).includes('1 open alert'), `banner: ${await banner.textContent()}`);
  await shot('alerts-banner');

  at('the banner leads to the Alerts view, reachable from the navigation too');
  await banner.getByRole('link', { name: 'See all alerts' }).click();
  await page.locator('main h1', { hasText: 'Alerts' }).waitFor();
  await go('overview');
  await page.getByRole('navigation').getByRole('link', { name: 'Alerts' }).click();
  await page.locator('main h1', { hasText: 'Alerts' }).waitFor();
  const open = page.getByTestId('open-alerts');
  await open.getByText('no eligible key left').waitFor();
  const table = page.getByTestId('alerts-table');
  await table.locator('tr[data-kind="pool-empty"]').first().waitFor();
  check((await table.locator('tbody tr').count()) >= 1, 'the history lists the raise');

  at('the history filters by kind and state');
  await page.getByTestId('alert-kind-filter').selectOption('budget');
  await page.getByText('No alert matches.').waitFor();
  await page.getByTestId('alert-kind-filter').selectOption('pool-empty');
  await table.locator('tr[data-kind="pool-empty"]').first().waitFor();
  check((await table.locator('tbody tr').count()) === 1, 'one pool-empty raise');
  await page.getByTestId('alert-state-filter').selectOption('cleared');
  await page.getByText('No alert matches.').waitFor();
  await page.getByTestId('alert-state-filter').selectOption('open');
  await table.locator('tr[data-kind="pool-empty"]').first().waitFor();
  await shot('alerts-view');

  at('settings: a plain-http webhook elsewhere is refused, a local one saved, the test alert sent');
  await go('settings');
  const card = page.getByTestId('alert-settings');
  await card.getByRole('heading', { name: 'Alerts' }).waitFor();
  refusals.expecting(true);
  await card.getByTestId('webhook-url').fill('http://example.com/hook');
  await card.getByRole('button', { name: 'Save alert settings' }).click();
  await card.locator('.field-error', { hasText: 'https' }).waitFor();
  refusals.expecting(false);
  await card.getByTestId('webhook-url').fill(WEBHOOK);
  await card.getByRole('button', { name: 'Save alert settings' }).click();
  await card.getByTestId('send-test-alert').waitFor();
  const placeholder = await card.getByTestId('webhook-url').getAttribute('placeholder');
  check(placeholder.includes('http://127.0.0.1/…') && !placeholder.includes('/hook'), `the URL is shown only by its host: ${placeholder}`);
  check(!(await page.content()).includes(WEBHOOK), 'the page holds the whole webhook URL');
  await card.getByTestId('send-test-alert').click();
  await card.getByTestId('test-alert-note').getByText('Test alert sent').waitFor();
  await shot('alerts-settings');

  at('a new key ends the alert: the banner goes, the history shows it cleared');
  const added = await page.evaluate(async (secret) => {
    const r = await fetch('api', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ AddKey: { secret, name: 'fresh key', node_cap: null } }) });
    return r.status;
  }, NEW_KEY);
  check(added === 200, `AddKey answered ${added}`);
  for (let i = 0; ; i++) {
    await go('keys');
    await page.waitForTimeout(500);
    if ((await banner.count()) === 0) break;
    check(i < 40, 'the banner stayed after the pool got a key');
  }
  await go('alerts');
  await page.getByTestId('open-alerts').getByText('Nothing needs your attention.').waitFor();
  await page.getByTestId('alert-state-filter').selectOption('cleared');
  await table.locator('tr[data-kind="pool-empty"]').first().waitFor();
  await page.getByTestId('webhook-status').getByText('delivered').waitFor();

  at('phone width');
  await page.setViewportSize({ width: 390, height: 844 });
  await go('alerts');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `the Alerts view scrolls sideways by ${overflow}px at phone width`);
  await shot('alerts-phone');

  at('no secret on any page');
  check(!(await page.content()).includes(NEW_KEY), 'the page holds the full API key');

  if (problems.length) throw new Error(`problems in the browser:\n${problems.join('\n')}`);
  log('passed');
} catch (e) {
  console.error(`alerts test failed: ${e.message}`);
  if (problems.length) console.error(problems.join('\n'));
  process.exitCode = 1;
} finally {
  await browser.close();
}
