// What the SDK does with a document: the ECID cookie and the page-hide flush, with a stand-in
// document, window and navigator (the real browser runs in tests/e2e/browser_sdk.rs).
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';

import { createClient, ECID_COOKIE, KEEPALIVE_BUDGET_BYTES } from '../dist/index.js';
import { accept, edge, ids, options, sleep } from './server.mjs';

/** A document whose cookie jar keeps `name=value` and remembers what was written. */
function fakeDocument() {
  const jar = new Map();
  const doc = new EventTarget();
  doc.visibilityState = 'visible';
  doc.written = [];
  Object.defineProperty(doc, 'cookie', {
    get: () => [...jar].map(([k, v]) => `${k}=${v}`).join('; '),
    set: (text) => {
      doc.written.push(text);
      const [pair] = text.split(';');
      const eq = pair.indexOf('=');
      jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    },
  });
  return doc;
}

function setGlobal(name, value) {
  Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
}

let beacons;
beforeEach(() => {
  beacons = [];
  setGlobal('document', fakeDocument());
  setGlobal('window', new EventTarget());
  setGlobal('navigator', {
    sendBeacon: (url, blob) => {
      beacons.push({ url, blob });
      return true;
    },
  });
});
afterEach(() => {
  for (const name of ['document', 'window', 'navigator']) delete globalThis[name];
});

function hide() {
  document.visibilityState = 'hidden';
  document.dispatchEvent(new Event('visibilitychange'));
}

test('the ECID lives in a first-party cookie and survives a new client (a page load)', async () => {
  const first = createClient(options('http://127.0.0.1:9', { cookie: true }));
  assert.match(first.ecid, /^\d{38}$/);
  const written = document.written.at(-1);
  assert.ok(written.startsWith(`${ECID_COOKIE}=${first.ecid};`), written);
  assert.match(written, /Max-Age=31536000/);
  assert.match(written, /Path=\//);
  assert.match(written, /SameSite=Lax/);
  assert.doesNotMatch(written, /Secure/, 'http page');
  const second = createClient(options('http://127.0.0.1:9', { cookie: true }));
  assert.equal(second.ecid, first.ecid);
  assert.equal(document.written.length, 2, 'written again to extend its year');
  // A cookie that is not an ECID is replaced.
  document.cookie = `${ECID_COOKIE}=garbage`;
  const third = createClient(options('http://127.0.0.1:9', { cookie: true }));
  assert.notEqual(third.ecid, 'garbage');
  assert.match(third.ecid, /^\d{38}$/);
  await Promise.all([first.close(), second.close(), third.close()]);
});

test('with a token, hiding the page sends the queue with fetch keepalive', async () => {
  const server = await edge();
  const inits = [];
  const pageHides = [];
  const client = createClient(
    options(server.url, {
      token: 't',
      flushOnPageHide: true,
      flushIntervalMs: 60_000,
      fetch: (url, init) => {
        inits.push(init);
        return fetch(url, init);
      },
      onPageHide: (info) => pageHides.push(info),
    }),
  );
  const sent = [1, 2, 3].map((n) => client.sendEvent({ n }));
  await sleep(50);
  assert.equal(server.requests.length, 0, 'waiting for the interval');
  hide();
  assert.equal(inits.length, 1, 'the request starts within the event handler');
  assert.equal(inits[0].keepalive, true);
  assert.deepEqual(pageHides, [{ keepalive: 3, beacon: 0, left: 0, requests: 1 }]);
  assert.equal(beacons.length, 0, 'a beacon cannot carry the token');
  const result = await client.flush();
  assert.equal(result.accepted, 3);
  assert.deepEqual(server.requests.flatMap(ids), sent);
  assert.equal(server.requests[0].headers.authorization, 'Bearer t');
  // pagehide after visibilitychange finds nothing left to send.
  window.dispatchEvent(new Event('pagehide'));
  assert.equal(inits.length, 1);
  await client.close();
  await server.close();
});

test('without a token, hiding the page hands the queue to sendBeacon as text/plain', async () => {
  const pageHides = [];
  const client = createClient(
    options('http://127.0.0.1:9', {
      flushOnPageHide: true,
      flushIntervalMs: 60_000,
      onPageHide: (info) => pageHides.push(info),
    }),
  );
  const sent = [1, 2].map((n) => client.sendEvent({ n }));
  window.dispatchEvent(new Event('pagehide'));
  assert.equal(beacons.length, 1);
  assert.equal(beacons[0].url, 'http://127.0.0.1:9/collection/batch/stream');
  assert.equal(beacons[0].blob.type, 'text/plain;charset=utf-8');
  const body = JSON.parse(await beacons[0].blob.text());
  assert.deepEqual(body.messages.map((m) => m.body.xdmEntity._id), sent);
  assert.deepEqual(pageHides, [{ keepalive: 0, beacon: 2, left: 0, requests: 1 }]);
  assert.equal(client.pending, 0, 'settled as handed off: no answer will come');
  assert.equal((await client.flush()).outcomes.length, 0, 'nothing left to send');
});

test('keepalive bodies stay within 64 KiB; the rest stays queued and goes later', async () => {
  const server = await edge();
  const inits = [];
  const pageHides = [];
  const client = createClient(
    options(server.url, {
      token: 't',
      flushOnPageHide: true,
      flushIntervalMs: 60_000,
      fetch: (url, init) => {
        inits.push(init);
        return fetch(url, init);
      },
      onPageHide: (info) => pageHides.push(info),
    }),
  );
  const sent = Array.from({ length: 8 }, (_, n) => client.sendEvent({ n, padding: 'x'.repeat(15_000) }));
  hide();
  const keepalive = inits.filter((i) => i.keepalive);
  const total = keepalive.reduce((sum, i) => sum + Buffer.byteLength(i.body), 0);
  assert.ok(keepalive.length >= 1);
  assert.ok(total <= KEEPALIVE_BUDGET_BYTES, `${total} bytes in flight with keepalive`);
  const [info] = pageHides;
  assert.equal(info.keepalive + info.left, 8);
  assert.ok(info.left >= 4, `${info.left} left for later`);
  const result = await client.flush();
  assert.equal(result.accepted, 8, 'the page stayed: the rest went as usual');
  assert.deepEqual(server.requests.flatMap(ids).sort(), [...sent].sort());
  assert.ok(inits.slice(keepalive.length).every((i) => !i.keepalive));
  await client.close();
  await server.close();
});

test('a batch waiting out a back-off is sent at page hide instead of waiting', async () => {
  const server = await edge((req, i) =>
    i === 0 ? { status: 429, headers: { 'retry-after': '30' }, body: { detail: 'slow down' } } : accept(req),
  );
  const client = createClient(options(server.url, { token: 't', flushOnPageHide: true, batchSize: 2 }));
  const sent = [client.sendEvent({ n: 1 }), client.sendEvent({ n: 2 })];
  await server.waitFor(1);
  await sleep(50);
  hide();
  await server.waitFor(2, 2000);
  assert.deepEqual(ids(server.requests[1]), sent, 'the throttled batch, long before 30 s');
  const result = await client.flush();
  assert.equal(result.accepted, 2);
  assert.equal(server.requests.length, 2, 'and only once');
  await client.close();
  await server.close();
});

test('close stops listening for page hide', async () => {
  const client = createClient(options('http://127.0.0.1:9', { flushOnPageHide: true, flushIntervalMs: 60_000 }));
  await client.close();
  client.sendEvent({ n: 1 });
  window.dispatchEvent(new Event('pagehide'));
  assert.equal(beacons.length, 0);
});
