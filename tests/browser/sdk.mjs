// The web SDK in Debian's headless Chromium, started by tests/e2e/browser_sdk.rs: a shop page
// (tests/browser/sdk-page.html, served by the Rust test on another port than the edge) sends
// events through the SDK to the real edge, is loaded twice (the ECID cookie must survive), and
// is left twice with events still queued (the page-hide flush must deliver them). Reports what
// the pages saw; the Rust test checks the raw topic.
//
// Environment: CDP_PAGE_URL, CDP_EDGE_URL, CDP_STREAM_ID (authenticated, rate-limited),
// CDP_BEACON_STREAM_ID (no authentication), CDP_ORG_ID, CDP_DATASET_ID, CDP_SCHEMA_ID.
import { main, report } from './launch.mjs';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const pageUrl = env('CDP_PAGE_URL');
const cfg = {
  edgeUrl: env('CDP_EDGE_URL'),
  orgId: env('CDP_ORG_ID'),
  datasetId: env('CDP_DATASET_ID'),
  schemaId: env('CDP_SCHEMA_ID'),
};
const stream = env('CDP_STREAM_ID');
const beaconStream = env('CDP_BEACON_STREAM_ID');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The stream allows 1 request a second: a page-hide request must not meet a 429 it cannot retry. */
const refill = () => sleep(1200);

/** The SDK asks for its token when created; a page left before it arrives could not send. */
const tokenArrived = (page) =>
  page.waitForFunction(() => (window.cdpTokensReceived || 0) >= (window.cdpTokensWanted || 0));

async function open(page, query) {
  await page.goto(`${pageUrl}${query}`);
  await page.waitForSelector('body[data-ready="yes"]');
}

await main(async (context) => {
  const consoleLines = [];
  const watch = (page, name) => {
    page.on('console', (m) => consoleLines.push(`${name} ${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`${name} error: ${e.message}`));
  };
  // First of all, before any request to the edge: a tab closed with events queued on the
  // authenticated stream. Its keepalive fetch needs a CORS preflight (Authorization, JSON) that
  // no earlier request left in the browser's preflight cache.
  const first = await context.newPage();
  watch(first, 'first');
  await open(first, '?load=0');
  const hiddenByColdClose = await first.evaluate(
    ([cfg, plan]) => window.cdpTest.queue(cfg, plan),
    [cfg, { streamId: stream, auth: true, label: 'cold-close', events: 4 }],
  );
  await tokenArrived(first);
  await first.close({ runBeforeUnload: true });

  const page = await context.newPage();
  watch(page, 'page');

  // Load 1: an invalid token first (the edge answers 403, the SDK asks /token), then more
  // batches than the stream's rate limit allows at once (429, retried), and one event the edge
  // refuses in its 207.
  await open(page, '?load=1');
  const load1 = await page.evaluate(
    ([cfg, plan]) => window.cdpTest.run(cfg, plan),
    [cfg, { streamId: stream, auth: true, token: 'not-a-valid-token', label: 'load1', events: 12, batchSize: 3, bad: true }],
  );

  // Load 2 of the same page: the ECID cookie must be the one load 1 set.
  await page.reload();
  await page.waitForSelector('body[data-ready="yes"]');
  const load2 = await page.evaluate(
    ([cfg, plan]) => window.cdpTest.run(cfg, plan),
    [cfg, { streamId: stream, auth: true, label: 'load2', events: 4, batchSize: 50 }],
  );

  // Leaving the page (a navigation) with events queued on the authenticated stream: `pagehide`
  // in the old document, fetch keepalive with the token.
  await refill();
  const hiddenByNavigation = await page.evaluate(
    ([cfg, plan]) => window.cdpTest.queue(cfg, plan),
    [cfg, { streamId: stream, auth: true, label: 'navigate', events: 5 }],
  );
  await tokenArrived(page);
  await open(page, '?load=3');
  const logAfterNavigation = await page.evaluate(() => window.cdpTest.log());

  // Closing a tab with events queued on the stream without authentication: sendBeacon.
  const hiddenByCloseBeacon = await page.evaluate(
    ([cfg, plan]) => window.cdpTest.queue(cfg, plan),
    [cfg, { streamId: beaconStream, auth: false, label: 'close-beacon', events: 5 }],
  );
  await page.close({ runBeforeUnload: true });

  // Closing a tab with events queued on the authenticated stream: fetch keepalive again.
  await refill();
  const second = await context.newPage();
  watch(second, 'second');
  await open(second, '?load=4');
  const hiddenByCloseFetch = await second.evaluate(
    ([cfg, plan]) => window.cdpTest.queue(cfg, plan),
    [cfg, { streamId: stream, auth: true, label: 'close-fetch', events: 5 }],
  );
  await tokenArrived(second);
  await second.close({ runBeforeUnload: true });

  // Requests a closed page left behind finish in the browser; closing it would cut them off.
  await sleep(1500);
  const third = await context.newPage();
  await open(third, '?load=5');
  const log = await third.evaluate(() => window.cdpTest.log());
  const cookies = await context.cookies();

  report({
    load1,
    load2,
    hidden: {
      coldClose: hiddenByColdClose,
      navigation: hiddenByNavigation,
      closeBeacon: hiddenByCloseBeacon,
      closeFetch: hiddenByCloseFetch,
    },
    logAfterNavigation,
    log,
    cookies: cookies.map(({ name, value, path, sameSite, expires }) => ({ name, value, path, sameSite, expires })),
    console: consoleLines,
  });
});
