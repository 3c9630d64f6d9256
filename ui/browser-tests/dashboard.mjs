// Browser test of the dashboard in Debian's Chromium, against devnode + fake-admin-api started by
// the Rust test `tools/e2e/tests/dashboard.rs`, which passes their addresses in the environment.
// Exits non-zero on the first failed check; saves a screenshot of every view.

import { join } from 'node:path';
import { launchChromium } from './chromium.mjs';
import { settingsFrom, steps, viewer, watchPage } from './harness.mjs';

const env = settingsFrom('tools/e2e/tests/dashboard.rs');
const APP = env('DASHBOARD_URL'); // http://127.0.0.1:P/<process id>/
const PASSWORD = env('NODE_PASSWORD');
const CONTROL = env('DEVNODE_CONTROL');
const FAKE_API = env('FAKE_ADMIN_API');
const SECRET = env('TEST_API_KEY');
const ADMIN_KEY = env('TEST_ADMIN_KEY');
const SHOTS = env('SCREENSHOT_DIR');
const NODE = 'alice.os';

const { at, log, check } = steps('dashboard test');
async function control(path, body) {
  const r = await fetch(`${CONTROL}${path}`, { method: 'POST', body: JSON.stringify(body) });
  return r.json();
}

const browser = await launchChromium();
const problems = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  // Refusals the test provokes on purpose (bad input → HTTP 400) are expected; nothing else is.
  const refusals = watchPage(page, problems);
  const { shot, go } = viewer(page, APP, SHOTS);
  const noSecretOnPage = async () => {
    const html = await page.content();
    check(!html.includes(SECRET), 'the page holds the full API key');
    check(!html.includes(ADMIN_KEY), 'the page holds the full admin key');
  };

  at('unauthenticated page load is refused');
  await page.goto(APP);
  await page.locator('input[type=password]').waitFor();
  check((await page.locator('#root').count()) === 0, 'the app page was served without a login');
  const anonymous = await page.evaluate(async () => {
    const r = await fetch('api', { method: 'POST', body: JSON.stringify({ ListKeys: null }) });
    return { type: r.headers.get('content-type'), text: await r.text() };
  });
  // A node answers a protected path without a login with its login page, and no content-type.
  const loginPage = /<html|<!doctype/i.test(anonymous.text) || (anonymous.type ?? '').startsWith('text/html');
  check(loginPage && !anonymous.text.includes('masked_key'), `API answered without login: ${anonymous.type}`);
  await shot('login');

  at('log in to the node');
  await page.fill('input[type=password]', PASSWORD);
  await Promise.all([page.waitForEvent('load'), page.keyboard.press('Enter')]);
  await page.locator('h1', { hasText: 'Overview' }).waitFor();
  log('logged in');

  at('settings: Admin API base URL and admin key, shown only by prefix');
  await go('settings');
  await page.getByLabel('Admin API base URL').fill(FAKE_API);
  await page.getByRole('button', { name: 'Save settings' }).click();
  await page.getByText('Saved.').waitFor();
  await page.locator('input[name=admin_key]').fill(ADMIN_KEY);
  await page.getByRole('button', { name: 'Save admin key' }).click();
  const state = page.getByTestId('admin-key-state');
  await state.getByText('sk-ant-admin01-TES').waitFor();
  check(!(await state.innerText()).includes(ADMIN_KEY.slice(18)), 'more than the prefix of the admin key is shown');
  check((await page.locator('input[name=admin_key]').inputValue()) === '', 'the admin key field was not cleared');
  await page.getByRole('button', { name: 'Test connection' }).click();
  await page.getByTestId('connection-result').getByText('connected').waitFor();
  await noSecretOnPage();
  await shot('settings');
  log('admin key set, connection tested');

  at('add a key and see it masked');
  await go('keys');
  await page.getByRole('button', { name: 'Add key' }).click();
  await page.getByTestId('add-key-error').waitFor(); // empty form: an inline error, nothing added
  refusals.expecting(true);
  await page.locator('input[name=secret]').fill('sk-ant-api03-short');
  await page.getByLabel('Name').fill('bad key');
  await page.getByRole('button', { name: 'Add key' }).click();
  await page.getByTestId('add-key-error').getByText('secret').waitFor(); // the issuer's reason, shown inline
  refusals.expecting(false);
  check((await page.getByTestId('keys-table').count()) === 0, 'a bad key was added');
  await page.locator('input[name=secret]').fill(SECRET);
  await page.getByLabel('Name').fill('trial 1');
  await page.getByLabel('Budget (USD)').fill('25');
  await page.getByRole('button', { name: 'Add key' }).click();
  const row = page.getByTestId('keys-table').locator('tbody tr', { hasText: 'trial 1' });
  await row.waitFor();
  await row.getByText('sk-ant-api03-TES...0001').waitFor();
  check((await page.locator('input[name=secret]').inputValue()) === '', 'the key field was not cleared');
  await row.getByText('apikey_TEST01').waitFor();
  await noSecretOnPage();
  log('key added, masked, resolved to apikey_TEST01');

  at('test key');
  await row.getByRole('button', { name: 'Test key' }).click();
  await row.getByTestId('test-key-result').getByText('active').waitFor();
  await shot('keys');

  at('a node requests a key: its marker appears on the overview plot');
  const answer = await control('/devnode/p2p', { from: NODE, to: 'key-issuer:anthropic-api-key-manager:keymanager.os', body: { RequestApiKey: null } });
  check(answer?.response?.Ok === SECRET, 'the node was not issued the key');
  await go('overview');
  await page.getByTestId('nodes-onboarded').getByText('1').waitFor();
  const marker = page.getByTestId('chart-markers').locator('li', { hasText: NODE });
  await marker.waitFor({ state: 'attached' });
  const over = await page.locator('[data-testid=cost-chart] .u-over').boundingBox();
  // A marker can sit on the plot's edge; the hover tolerance (a few pixels) reaches it from inside.
  const px = Math.min(Math.max(Number(await marker.getAttribute('data-px')), 2), over.width - 3);
  await page.mouse.move(over.x + px, over.y + over.height / 2);
  await page.getByTestId('chart-tooltip').getByText(NODE).waitFor();
  await shot('overview');
  await page.mouse.click(over.x + px, over.y + over.height / 2);
  await page.getByTestId('pinned-nodes').getByText(NODE).waitFor();
  await page.getByTestId('pinned-nodes').getByRole('button', { name: 'Close' }).click();
  // The same list by keyboard: the marker list below the plot, then a marker's button.
  await page.getByText('Node joins in view').focus();
  await page.keyboard.press('Enter');
  await page.getByTestId('chart-markers').getByRole('button', { name: NODE }).focus();
  await page.keyboard.press('Enter');
  await page.getByTestId('pinned-nodes').getByText(NODE).waitFor();
  // How a figure is computed, by keyboard.
  await page.getByRole('button', { name: 'How cost per onboarded node is computed' }).focus();
  await page.keyboard.press('Enter');
  await page.getByRole('note').getByText('Total cost ÷ nodes ever issued').waitFor();
  log('marker shown and named in the tooltip');

  at('advance the virtual clock: cost grows');
  const spent = async () => (await page.getByTestId('spend-total').locator('.stat-value').innerText()).trim();
  const before = await spent();
  await control('/devnode/clock/advance', { seconds: 3 * 3600 });
  await go('status');
  await page.getByRole('button', { name: 'Poll now' }).click();
  let after = before;
  for (let i = 0; i < 60 && after === before; i++) {
    await page.waitForTimeout(500);
    await go('overview');
    after = await spent();
  }
  const dollars = (s) => Number(s.replace(/[^0-9.]/g, ''));
  check(dollars(after) > dollars(before), `total spend did not grow: ${before} → ${after}`);
  log(`cost grew from ${before} to ${after}`);

  at('zoom and presets redraw the plot');
  await page.getByRole('button', { name: '24 h' }).click();
  await page.getByRole('button', { name: '24 h', pressed: true }).waitFor();
  await page.locator('[data-testid=cost-chart] .u-over').hover();
  await page.mouse.wheel(0, -400);
  await page.getByRole('button', { name: 'Reset' }).click();
  await page.getByRole('button', { name: 'All', pressed: true }).waitFor();

  at('key detail: its own plot and node');
  await go('keys');
  await page.getByRole('link', { name: 'trial 1' }).click();
  await page.locator('h1', { hasText: 'trial 1' }).waitFor();
  await page.getByTestId('nodes-table').getByText(NODE).waitFor();
  const attributed = await page.getByTestId('nodes-table').locator('tr', { hasText: NODE }).locator('td.num').innerText();
  check(dollars(attributed) > 0, `no cost attributed to ${NODE} after hours of holding the key: ${attributed}`);
  await page.getByTestId('chart-markers').locator('li', { hasText: NODE }).waitFor({ state: 'attached' });
  await page.getByRole('heading', { name: 'Usage by model' }).waitFor();
  await page.getByRole('cell', { name: /claude-sonnet-4-5/ }).waitFor();
  await noSecretOnPage();
  await shot('key-detail');

  at('nodes: search');
  await go('nodes');
  await page.getByLabel('Search nodes').fill('ali');
  await page.getByTestId('nodes-table').getByText(NODE).waitFor();
  await page.getByLabel('Search nodes').fill('nobody-here');
  await page.getByText('No node matches').waitFor();
  await page.getByLabel('Search nodes').fill('');
  await page.getByTestId('nodes-table').waitFor();
  await shot('nodes');

  at('status');
  await go('status');
  const last = await page.getByTestId('last-success').innerText();
  check(!last.includes('never'), 'no successful poll shown');
  await shot('status');

  at('retire a key');
  await go('keys');
  await page.getByTestId('keys-table').locator('tbody tr', { hasText: 'trial 1' }).getByRole('button', { name: 'Retire' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Retire key' }).click();
  await page.getByTestId('keys-table').locator('tbody tr', { hasText: 'trial 1' }).locator('.badge-retired').waitFor();
  await shot('keys-retired');
  at('remove a key (after confirming)');
  const retired = page.getByTestId('keys-table').locator('tbody tr', { hasText: 'trial 1' });
  await retired.getByRole('button', { name: 'Remove' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
  check((await retired.locator('.badge-retired').count()) === 1, 'cancel removed the key');
  await retired.getByRole('button', { name: 'Remove' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Remove key' }).click();
  await retired.locator('.badge-removed').waitFor();

  at('audit log');
  await go('audit');
  const audit = page.getByTestId('audit-table');
  await audit.getByText('retire key').first().waitFor();
  await audit.getByText('remove key').first().waitFor();
  await audit.getByText(NODE).first().waitFor();
  await noSecretOnPage();
  await shot('audit');

  at('phone width and dark mode');
  await page.setViewportSize({ width: 390, height: 844 });
  await go('overview');
  await page.getByTestId('cost-chart').waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `the overview is ${overflow}px wider than a phone screen`);
  await shot('overview-phone');
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.emulateMedia({ colorScheme: 'dark' });
  await go('overview');
  await page.getByTestId('chart-markers').locator('li', { hasText: NODE }).waitFor({ state: 'attached' });
  await shot('overview-dark');
  await go('keys');
  await shot('keys-dark');

  at('a session that lost its login is told to log in');
  await context.clearCookies();
  await page.getByRole('button', { name: 'Refresh' }).click();
  await page.getByTestId('logged-out').getByText('Log in to your node').waitFor();
  await shot('logged-out');

  at('no console errors');
  check(problems.length === 0, problems.join('\n'));
  log(`all checks passed; screenshots in ${SHOTS}`);
} catch (e) {
  console.error(`dashboard test FAILED: ${e.message}`);
  for (const p of problems) console.error(p);
  process.exitCode = 1;
} finally {
  await browser.close();
}
