// Loads the cxstream dashboard in headless Chromium (Debian's, via puppeteer-core) and reads it back.
//   node dashboard.mjs '<json>'
//   json: {"chromium", "base": "http://127.0.0.1:PORT", "token", "tenants": [...],
//          "screenshots": {tenant: {"top": path, "bottom": path}},
//          "timeout_ms"}
// Prints one JSON object: the status of a visit without the token, the cookie the token visit set,
// per tenant every card's SQL and table (data-value of each cell), whether a chart was drawn, the
// status line, and whether the page refreshed by itself; and every URL the browser requested.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

const spec = JSON.parse(process.argv[2]);
const timeout = spec.timeout_ms || 60000;
const profile = mkdtempSync(join(tmpdir(), 'cx-chromium-'));
const browser = await puppeteer.launch({
  executablePath: spec.chromium,
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-domain-reliability', '--no-pings', '--hide-scrollbars', '--font-render-hinting=none',
    `--user-data-dir=${profile}`,
  ],
});
const out = { requests: [], console: [], tenants: {} };
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1400, height: 900, deviceScaleFactor: 1 });
  page.on('request', (req) => out.requests.push(req.url()));
  page.on('console', (msg) => out.console.push(`${msg.type()}: ${msg.text()}`));
  page.on('pageerror', (err) => out.console.push(`pageerror: ${err.message}`));

  // Without the token: the page itself is refused.
  const refused = await page.goto(spec.base + '/', { waitUntil: 'load' });
  out.without_token = { status: refused.status(), text: (await page.evaluate(() => document.body.innerText)).slice(0, 200) };

  // With it, once: a cookie, and a redirect to the URL without the token.
  await page.goto(`${spec.base}/?token=${encodeURIComponent(spec.token)}`, { waitUntil: 'load' });
  out.url_after_token = page.url();
  out.cookies = (await page.cookies()).map((c) => ({ name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite, value_is_token: c.value === spec.token }));

  for (const tenant of spec.tenants) {
    await page.waitForFunction(() => document.querySelectorAll('#tenant option').length > 0, { timeout });
    await page.select('#tenant', tenant);
    await page.waitForFunction(
      (t) => document.body.dataset.tenant === t && document.body.dataset.state === 'ready'
        && [...document.querySelectorAll('section.card')].every((c) => c.dataset.state === 'ready'),
      { timeout }, tenant,
    );
    const first = await page.evaluate(() => document.body.dataset.generatedAt);
    const cards = await page.evaluate(() => [...document.querySelectorAll('section.card')].map((card) => ({
      id: card.dataset.chart,
      state: card.dataset.state,
      ms: Number(card.dataset.ms),
      title: card.querySelector('h2').textContent,
      definition: card.querySelector('p.definition').textContent,
      sql: card.querySelector('pre.sql').textContent,
      drawn: !!card.querySelector('[data-role=plot] canvas') || !!card.querySelector('[data-role=plot] .tile'),
      empty: !!card.querySelector('[data-role=plot] .empty'),
      columns: [...card.querySelectorAll('table thead th')].map((th) => th.dataset.col),
      rows: [...card.querySelectorAll('table tbody tr')].map((tr) => [...tr.querySelectorAll('td')].map((td) => td.dataset.value)),
      tiles: Object.fromEntries([...card.querySelectorAll('.tile')].map((t) => [t.dataset.col, t.querySelector('b').textContent])),
    })));
    // Live: the page asks again by itself (every CX_DASHBOARD_REFRESH_S).
    let refreshed = false;
    try {
      await page.waitForFunction((g) => document.body.dataset.generatedAt !== g, { timeout: 15000 }, first);
      refreshed = true;
    } catch (e) {
      refreshed = false;
    }
    const status = await page.evaluate(() => document.querySelector('#status').textContent);
    out.tenants[tenant] = { cards, refreshed, status, url: page.url() };
    // Two viewport-sized screenshots: the top of the page, and from the support-by-day card down.
    const shots = (spec.screenshots || {})[tenant];
    if (shots) {
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: shots.top });
      await page.evaluate(() => {
        const card = document.getElementById('card-support_daily');
        window.scrollTo(0, card.getBoundingClientRect().top + window.scrollY - document.querySelector('header').offsetHeight - 16);
      });
      await page.screenshot({ path: shots.bottom });
    }
  }
} catch (err) {
  out.error = String(err && err.stack ? err.stack : err);
  try {
    const [page] = (await browser.pages()).slice(-1);
    out.error_page = await page.evaluate(() => ({
      body: { ...document.body.dataset },
      status: document.querySelector('#status') && document.querySelector('#status').textContent,
      cards: [...document.querySelectorAll('section.card')].map((c) => [c.dataset.chart, c.dataset.state,
        (c.querySelector('p.error') || {}).textContent]),
    }));
  } catch (e) {
    out.error_page = String(e);
  }
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(out) + '\n');
