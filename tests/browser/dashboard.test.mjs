// The dashboard in a real browser: Debian's Chromium, headless, driven by playwright-core,
// against `switchboard serve` with its defaults (a temporary data dir, an ephemeral loopback
// port). Checks that the three built-in upstreams show as healthy, that a tool called through
// the "try it" form shows its result, and that the call appears in the live stream (and in the
// audit view when the gateway has an audit log). Saves a screenshot to
// target/ci-artifacts/dashboard.png. Every request the page makes must stay on the loopback
// gateway: anything else is blocked and fails the test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const targetDir = process.env.CARGO_TARGET_DIR || path.join(repo, 'target');
const binary = process.env.SWITCHBOARD_BIN || path.join(targetDir, 'debug', 'switchboard');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const artifacts = path.join(repo, 'target', 'ci-artifacts');
// One bound for every wait below: a wait for a condition, not a timing assertion.
const WAIT_MS = 60_000;

function startGateway(dataDir) {
  const child = spawn(binary, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
    cwd: dataDir,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const base = new Promise((resolve, reject) => {
    let buffer = '';
    let partial = '';
    const timer = setTimeout(() => reject(new Error('switchboard did not start listening')), WAIT_MS);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text) => {
      const lines = (partial + text).split('\n');
      partial = lines.pop();
      for (const line of lines) process.stderr.write(`switchboard: ${line}\n`);
      buffer += text;
      const match = buffer.match(/listening on (http:\/\/127\.0\.0\.1:\d+)\/mcp/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`switchboard exited (${code}) before listening`)));
  });
  return { child, base };
}

function stopGateway(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.on('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

test('dashboard shows upstreams, calls a tool, and streams the call', async () => {
  assert.ok(existsSync(binary), `build the binary first (cargo build -p switchboard): ${binary}`);
  assert.ok(existsSync(chromiumPath), `install Chromium (apt-get install chromium): ${chromiumPath}`);
  const dataDir = mkdtempSync(path.join(tmpdir(), 'switchboard-browser-'));
  const gateway = startGateway(dataDir);
  let browser;
  try {
    const base = await gateway.base;
    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: ['--no-sandbox', '--disable-dev-shm-usage'],
    });
    const context = await browser.newContext({ viewport: { width: 1360, height: 1000 } });
    const blocked = [];
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (url.origin === base) return route.continue();
      blocked.push(url.href);
      return route.abort();
    });
    const page = await context.newPage();
    const pageErrors = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.setDefaultTimeout(WAIT_MS);

    await page.goto(`${base}/`);

    // Upstreams: the three built-in servers, healthy, with their tools counted.
    for (const name of ['fs', 'sql', 'crm']) {
      const row = page.locator(`#upstreams tr[data-upstream="${name}"]`);
      await row.locator('.pill-ok', { hasText: 'healthy' }).waitFor();
      await row.locator('.pill-ok', { hasText: 'closed' }).waitFor();
    }
    await page.locator('#overall', { hasText: '3/3 upstreams healthy' }).waitFor();

    // The live stream is connected before the call, so the call must show up in it.
    await page.locator('#calls-state', { hasText: 'live' }).waitFor();

    // Tool catalog: search, select, "try it".
    await page.locator('#tool-list li').first().waitFor();
    await page.fill('#tool-search', 'read_text');
    await page.locator('#tool-list li[data-tool="fs__read_text_file"]').click();
    await page.locator('#tool-detail .tool-name', { hasText: 'fs__read_text_file' }).waitFor();
    assert.match(await page.locator('#tool-detail .input-schema').textContent(), /"path"/);
    await page.fill('#try-args', JSON.stringify({ path: 'README.txt' }));
    await page.click('#try-call');
    await page.locator('#try-result', { hasText: 'root of Switchboard' }).waitFor();
    assert.match(await page.locator('#try-status').textContent(), /^OK in/);

    // The call in the live stream.
    const streamed = page.locator('#calls tr[data-tool="fs__read_text_file"]');
    await streamed.waitFor();
    assert.match(await streamed.textContent(), /ok/);

    // The audit view: the call when the gateway has an audit log, else a clear notice.
    const audit = page.locator('#audit');
    await audit.locator('#audit-disabled, #audit-table, p').first().waitFor();
    if (await page.locator('#audit-disabled').count()) {
      assert.match(await audit.textContent(), /Audit log not enabled/);
    } else {
      await page.locator('#audit', { hasText: 'fs__read_text_file' }).waitFor();
    }

    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: path.join(artifacts, 'dashboard.png'), fullPage: true });

    assert.deepEqual(blocked, [], 'the page requested something other than the gateway');
    assert.deepEqual(pageErrors, [], 'the page threw');
  } finally {
    if (browser) await browser.close();
    await stopGateway(gateway.child);
    rmSync(dataDir, { recursive: true, force: true });
  }
});
