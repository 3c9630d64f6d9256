// The homepage widget in Chromium, rendered as the node's homepage renders an HTML widget: an
// iframe whose srcdoc is the widget, on the node's origin (so its script reads the API with the
// login cookie). Run by tools/e2e/tests/homepage.rs with the widget HTML and what the pool holds.
import { launchChromium } from './chromium.mjs';
import { settingsFrom } from './harness.mjs';

const env = settingsFrom('tools/e2e/tests/homepage.rs');
const APP = env('DASHBOARD_URL');
const PASSWORD = env('NODE_PASSWORD');
const WIDGET = env('WIDGET_HTML');
const ICON = env('ICON');
const EXPECT = env('EXPECT'); // "empty", "one-key" or "pool-empty-alert"

const browser = await launchChromium();
const problems = [];
try {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console error: ${m.text()}`));
  // Log in on the node's origin, as the operator's homepage session is.
  const origin = new URL(APP).origin;
  const login = await page.request.post(`${origin}/login`, { data: { password: PASSWORD } });
  if (!login.ok()) throw new Error(`login answered ${login.status()}`);
  await page.goto(APP);
  // The homepage's app icon: `<img src={base64_icon}>` (hyperdrive's homepage UI, AppIcon).
  const iconWidth = await page.evaluate(async (src) => {
    const img = document.createElement('img');
    img.src = src;
    document.body.append(img);
    try {
      await img.decode();
    } catch {
      return 0;
    }
    return img.naturalWidth;
  }, ICON);
  if (!(iconWidth > 0)) throw new Error('the icon does not load as an image');
  await page.evaluate((html) => {
    document.body.innerHTML = '';
    const frame = document.createElement('iframe');
    frame.setAttribute('sandbox', 'allow-scripts allow-same-origin allow-forms allow-popups allow-modals');
    frame.id = 'widget';
    frame.srcdoc = html;
    document.body.append(frame);
  }, WIDGET);
  const widget = page.frameLocator('#widget');
  await widget.getByText('active keys').waitFor();
  const text = await widget.locator('body').innerText();
  const warns = (await widget.getByTestId('no-eligible-key').count()) === 1;
  const alerts = await widget.getByTestId('widget-alert').allInnerTexts();
  if (EXPECT === 'pool-empty-alert') {
    if (!warns || !alerts.some((a) => /no eligible key/.test(a))) throw new Error(`the open pool-empty alert is not shown: ${text}`);
  } else if (EXPECT === 'empty') {
    if (!warns) throw new Error(`an empty pool shows no warning: ${text}`);
    if (!/\$0\.00\s*spent today/.test(text)) throw new Error(`spend today missing: ${text}`);
  } else {
    if (warns) throw new Error(`a pool with an issuable key warns: ${text}`);
    if (!/1\s*active keys/.test(text) || !/1\s*can be issued/.test(text)) throw new Error(`the key is not counted: ${text}`);
  }
  if (/sk-ant-/.test(text)) throw new Error('the widget shows a key');
  if (problems.length) throw new Error(problems.join('\n'));
  console.log(`homepage widget test (${EXPECT}): ok`);
} catch (e) {
  console.error(`homepage widget test FAILED: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
