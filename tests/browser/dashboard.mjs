// Drives the dashboard as a person would, for tests/e2e/dashboard.rs: signs in (a wrong token
// first), reads the overview, the dataset's activity, the failing batch (reached by clicking its
// failed count), the segments, the stream's live events and a buyer's profile (looked up by
// identity through the form), and keeps a screenshot of each.
import { join } from 'node:path';
import { main, report } from './launch.mjs';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const control = env('CONTROL_URL');
const admin = env('ADMIN_TOKEN');
const datasetId = env('DATASET_ID');
const streamId = env('STREAM_ID');
const batchId = env('BATCH_ID');
const segmentId = env('SEGMENT_ID');
const org = env('ORG_ID');
const profileIdentity = env('PROFILE_IDENTITY');
const shots = env('SCREENSHOT_DIR');

const text = async (page, selector) => (await page.locator(selector).first().innerText()).trim();

/** Sums each series of a chart's points (their data-values attribute). */
async function chart(page, scope) {
  const values = await page
    .locator(`${scope} svg.chart g.point`)
    .evaluateAll((gs) => gs.map((g) => g.getAttribute('data-values').split(',').map(Number)));
  const sums = values.reduce((acc, v) => acc.map((a, i) => a + (v[i] || 0)), [0, 0]);
  return { points: values.length, sums };
}

await main(async (context) => {
  const page = await context.newPage();
  const seen = {};

  // A page of the dashboard without a session sends the browser to the sign-in form.
  await page.goto(`${control}/ui/datasets/${datasetId}`);
  const redirectedToLogin = new URL(page.url()).pathname === '/ui/login';
  await page.fill('input[name=token]', 'not-the-token');
  await page.click('button[type=submit]');
  await page.waitForLoadState('load');
  const wrongTokenMessage = await text(page, '[role=alert]');
  await page.fill('input[name=token]', admin);
  await page.click('button[type=submit]');
  await page.waitForLoadState('load');
  // Back where the browser was going: the dataset page; then the overview.
  const backTo = new URL(page.url()).pathname;
  await page.goto(`${control}/ui`);
  seen.login = { redirectedToLogin, wrongTokenMessage, backTo, landedOn: new URL(page.url()).pathname };

  const row = `tr.dataset[data-id="${datasetId}"]`;
  seen.overview = {
    records: await text(page, `${row} td.records`),
    failed: await text(page, `${row} td.failed`),
  };
  await page.screenshot({ path: join(shots, 'dashboard-overview.png'), fullPage: true });

  await page.click(`${row} a`);
  await page.waitForLoadState('load');
  const activity = await chart(page, 'main');
  seen.dataset = {
    path: new URL(page.url()).pathname,
    recordCount: await text(page, '#record-count'),
    failedCount: await text(page, '#failed-count'),
    chartPoints: activity.points,
    chartRecords: activity.sums[0],
    chartFailed: activity.sums[1],
    batchRows: await page.locator('table.batches tr.batch').count(),
  };
  await page.screenshot({ path: join(shots, 'dashboard-dataset.png'), fullPage: true });

  await page.click(`tr.batch[data-id="${batchId}"] a.bad`);
  await page.waitForLoadState('load');
  const stages = await page.locator('tr.failed-record td:nth-child(2)').allInnerTexts();
  seen.batch = {
    path: new URL(page.url()).pathname,
    failedRows: await page.locator('tr.failed-record').count(),
    reasons: await page.locator('tr.failed-record ul.reasons li').allInnerTexts(),
    stages: stages.map((s) => s.trim()).sort(),
  };
  // The first payload opened, as a person checking one would.
  await page.locator('tr.failed-record details summary').first().click();
  await page.screenshot({ path: join(shots, 'dashboard-batch.png'), fullPage: true });

  await page.click('nav a[href="/ui/segments"]');
  await page.waitForLoadState('load');
  const card = `article.segment[data-id="${segmentId}"]`;
  const entries = await chart(page, card);
  seen.segment = {
    members: await text(page, `#members-${segmentId}`),
    chartPoints: entries.points,
    chartEntries: entries.sums[0],
    chartExits: entries.sums[1],
  };
  await page.screenshot({ path: join(shots, 'dashboard-segments.png'), fullPage: true });

  await page.goto(`${control}/ui`);
  await page.click(`tr.stream[data-id="${streamId}"] a[href$="/events"]`);
  await page.waitForLoadState('load');
  const statuses = await page.locator('table.events tr.event td:nth-child(2)').allInnerTexts();
  seen.live = {
    accepted: statuses.filter((s) => s.trim() === 'accepted').length,
    refused: statuses.filter((s) => s.trim().startsWith('refused')).length,
    refreshes: (await page.locator('meta[http-equiv=refresh]').count()) === 1,
  };
  await page.screenshot({ path: join(shots, 'dashboard-live.png'), fullPage: true });

  // A profile, looked up by identity through the form: first one nobody has, then a buyer.
  await page.click('nav a[href="/ui/profiles"]');
  await page.waitForLoadState('load');
  const lookUp = async (ns, id) => {
    await page.fill('form.lookup input[name=org]', org);
    await page.fill('form.lookup input[name=ns]', ns);
    await page.fill('form.lookup input[name=id]', id);
    await page.click('form.lookup button[type=submit]');
    await page.waitForLoadState('load');
  };
  await lookUp('CRMID', 'nobody-has-this');
  const unknown = await text(page, '#lookup-result');
  await lookUp('CRMID', profileIdentity);
  const cells = (selector) =>
    page.locator(selector).allInnerTexts().then((all) => all.map((t) => t.trim()));
  seen.profile = {
    unknown,
    query: new URL(page.url()).search,
    profileId: await text(page, '#profile-id'),
    identities: await cells('ul.identities li.identity'),
    historyRows: await page.locator('table.history tr.change').count(),
    eventTypes: await cells('table.events tr.event td.type'),
    attributes: await cells('table.fragments tr.fragment'),
    memberships: await page.locator('table.memberships tr.membership').evaluateAll((rows) =>
      rows.map((r) => ({
        id: r.getAttribute('data-id'),
        segment: r.querySelector('td.segment').innerText.trim(),
        status: r.querySelector('td.status').innerText.trim(),
        explain: r.querySelector('td.explain').innerText.trim(),
      })),
    ),
  };
  await page.screenshot({ path: join(shots, 'dashboard-profile.png'), fullPage: true });

  report(seen);
});
