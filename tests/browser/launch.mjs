// Starts Debian's Chromium (the `chromium` package, installed by scripts/browser.sh) headless
// through playwright-core. Playwright's own browser downloads cannot be fetched here, so the
// executable is given; the flags keep Chromium off the network, which is closed on CI machines
// and would otherwise be asked for updates, sync and safe-browsing lists at every start.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CHROMIUM = process.env.CDP_CHROMIUM || '/usr/bin/chromium';

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

/** A fresh browser with an empty profile; `close()` removes the profile too. */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), 'cdp-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1280, height: 900 },
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** What a script found, for the Rust test that started it: one JSON line on stdout. */
export function report(value) {
  process.stdout.write(`CDP-RESULT ${JSON.stringify(value)}\n`);
}

/** Runs `body`, reporting a thrown error as a failure (exit code 1) after closing the browser. */
export async function main(body) {
  let browser;
  try {
    browser = await launch();
    await body(browser.context);
  } catch (e) {
    process.stderr.write(`browser script failed: ${e && e.stack ? e.stack : e}\n`);
    process.exitCode = 1;
  } finally {
    if (browser) await browser.close();
  }
}
