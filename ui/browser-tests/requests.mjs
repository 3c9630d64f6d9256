// Browser test of the issuance policy's screens in Debian's Chromium: the policy card in Settings
// and the Requests view, against devnode + fake-admin-api started by `tools/e2e/tests/requests_browser.rs`
// (which also adds a key). Exits non-zero on the first failed check; saves screenshots.

import { join } from 'node:path';
import { launchChromium } from './chromium.mjs';
import { settingsFrom, steps, viewer, watchPage } from './harness.mjs';

const env = settingsFrom('tools/e2e/tests/requests_browser.rs');
const APP = env('DASHBOARD_URL'); // http://127.0.0.1:P/<process id>/
const PASSWORD = env('NODE_PASSWORD');
const CONTROL = env('DEVNODE_CONTROL');
const ISSUER = env('ISSUER_PROCESS');
const SECRET = env('TEST_API_KEY');
const SHOTS = env('SCREENSHOT_DIR');

const { at, log, check } = steps('requests test');
/** A p2p key request from `node`; the answer's `Ok` is never printed (it is a key). */
async function askForKey(node) {
  const r = await fetch(`${CONTROL}/devnode/p2p`, { method: 'POST', body: JSON.stringify({ from: node, to: ISSUER, body: { RequestApiKey: null } }) });
  const answer = (await r.json()).response ?? {};
  return { gotKey: typeof answer.Ok === 'string', err: answer.Err ?? null };
}

const browser = await launchChromium();
const problems = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  // Refusals the test provokes on purpose (bad input → HTTP 400) are expected; nothing else is.
  const refusals = watchPage(page, problems);
  const { shot, go } = viewer(page, APP, SHOTS);

  at('log in to the node');
  await page.goto(APP);
  await page.fill('input[type=password]', PASSWORD);
  await Promise.all([page.waitForEvent('load'), page.keyboard.press('Enter')]);
  await page.locator('h1', { hasText: 'Overview' }).waitFor();

  at('settings: a bad pattern is refused with its reason');
  await go('settings');
  const card = page.getByTestId('issuance-policy');
  await card.locator('select[name=issuance_policy]').selectOption('approval');
  await card.locator('textarea[name=allowlist]').fill('a*.os');
  refusals.expecting(true);
  await card.getByRole('button', { name: 'Save policy' }).click();
  await card.getByText('may only stand as the whole first label').waitFor();
  refusals.expecting(false);

  at('settings: approval mode, an allowlist pattern and a denylist');
  await card.locator('textarea[name=allowlist]').fill('*.Team\n');
  await card.locator('textarea[name=denylist]').fill('spam.os');
  await card.getByRole('button', { name: 'Save policy' }).click();
  await card.getByText('Saved.').waitFor();
  check((await card.locator('textarea[name=allowlist]').inputValue()) === '*.team', 'the allowlist is not shown as stored (lowercase)');
  await shot('settings-policy');
  log('policy saved: approval, *.team, spam.os');

  at('two nodes ask and wait; the denylisted one is refused');
  for (const node of ['bob.os', 'carol.os']) {
    const answer = await askForKey(node);
    check(answer.err === 'pending approval', `${node} was answered ${answer.err ?? 'with a key'}`);
  }
  check((await askForKey('spam.os')).err === 'not allowed', 'a denylisted node was not refused');
  check((await askForKey('ann.team')).gotKey, 'an allowlisted node did not get a key');

  at('the Requests view lists the pending nodes, oldest first');
  await go('requests');
  const table = page.getByTestId('requests-table');
  await table.locator('tr[data-node="carol.os"]').waitFor();
  const nodes = await table.locator('tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-node')));
  check(JSON.stringify(nodes) === JSON.stringify(['bob.os', 'carol.os']), `pending rows: ${nodes}`);
  await page.getByTestId('pending-count').getByText('2 of at most 10000').waitFor();
  await shot('requests');

  at('approve bob.os: it gets its key at its next request');
  await table.getByRole('button', { name: 'Approve bob.os' }).click();
  await table.locator('tr[data-node="bob.os"]').waitFor({ state: 'detached' });
  check((await askForKey('bob.os')).gotKey, 'an approved node did not get its key');

  at('deny carol.os: it is answered not allowed');
  await table.getByRole('button', { name: 'Deny carol.os' }).click();
  await page.getByText('No node is waiting for approval.').waitFor();
  check((await askForKey('carol.os')).err === 'not allowed', 'a denied node was not refused');

  at('decisions are listed and can be changed');
  await page.getByRole('button', { name: 'Approved' }).click();
  await table.locator('tr[data-node="bob.os"]').getByText('holds a key').waitFor();
  await page.getByRole('button', { name: 'All' }).click();
  await table.locator('tr[data-node="carol.os"]').getByRole('button', { name: 'Approve carol.os' }).waitFor();

  at('decide a node in advance; a pattern is refused');
  refusals.expecting(true);
  await page.locator('input[name=decide_node]').fill('*.os');
  await page.locator('form[aria-label="Decide a node in advance"]').getByRole('button', { name: 'Approve' }).click();
  await page.getByText('a node name is needed here').waitFor();
  refusals.expecting(false);
  await page.locator('input[name=decide_node]').fill('Dave.os');
  await page.locator('form[aria-label="Decide a node in advance"]').getByRole('button', { name: 'Approve' }).click();
  await table.locator('tr[data-node="dave.os"]').waitFor();
  check(!(await page.content()).includes(SECRET), 'the page holds the full API key');
  await shot('requests-all');

  at('phone width');
  await page.setViewportSize({ width: 390, height: 844 });
  await go('requests');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `the Requests view is ${overflow}px wider than a phone screen`);
  await shot('requests-phone');

  at('no console errors');
  check(problems.length === 0, problems.join('\n'));
  log(`all checks passed; screenshots in ${SHOTS}`);
} catch (e) {
  console.error(`requests test FAILED: ${e.message}`);
  for (const p of problems) console.error(p);
  process.exitCode = 1;
} finally {
  await browser.close();
}
