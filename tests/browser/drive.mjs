// Drives headless Chromium (Debian's, via puppeteer-core) through the SDK pages.
//   node drive.mjs '<json>'   json: {"chromium": path, "pages": [{"name", "url"}, ...]}
// Prints one JSON line per page once its script ran ({"name", "ok", "result" | "error", "console"}),
// then keeps the pages open (SDKs deliver and retry in the background) until a line arrives on
// stdin, then closes them (a closing page flushes its beacons) and the browser, and exits.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

const { chromium, pages } = JSON.parse(process.argv[2]);
const profile = mkdtempSync(join(tmpdir(), 'cx-chromium-'));
const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--user-data-dir=${profile}`,
  ],
});
const open = [];
try {
  await Promise.all(pages.map(async ({ name, url }) => {
    const context = await browser.createBrowserContext(); // fresh storage: no SDK state shared
    const page = await context.newPage();
    open.push({ context, page });
    const console_ = [];
    page.on('console', (msg) => console_.push(`${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => console_.push(`pageerror: ${err.message}`));
    page.on('requestfailed', (req) => console_.push(`requestfailed: ${req.method()} ${req.url()} ${req.failure()?.errorText}`));
    let line;
    try {
      await page.goto(url, { waitUntil: 'load' });
      const result = await page.waitForFunction(() => window.cxResult, { timeout: 20000 }).then((h) => h.jsonValue());
      line = { name, ok: true, result, console: console_ };
    } catch (err) {
      line = { name, ok: false, error: String(err), console: console_ };
    }
    process.stdout.write(JSON.stringify(line) + '\n');
  }));
  process.stdout.write(JSON.stringify({ name: '*', ok: true, result: 'all pages ran' }) + '\n');
  await new Promise((resolve) => process.stdin.once('data', resolve).once('end', resolve));
  process.stdin.destroy(); // an open stdin would keep node running
  for (const { page } of open) await page.close({ runBeforeUnload: true });
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
