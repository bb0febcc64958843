// The client against a real HTTP server: batching, the envelope, retries, tokens, the queue
// bound and flush.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { createClient } from '../dist/index.js';
import { accept, edge, ids, options, problem, sleep } from './server.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('a full batch goes at once; the rest waits for flush', async () => {
  const server = await edge();
  const client = createClient(options(server.url, { batchSize: 3, flushIntervalMs: 60_000 }));
  const sent = [];
  for (let i = 0; i < 7; i++) sent.push(client.sendEvent({ eventType: 'web.webpagedetails.pageViews', n: i }));
  await server.waitFor(2);
  await sleep(150);
  assert.equal(server.requests.length, 2, 'the seventh event waits for the interval or a flush');
  assert.deepEqual(server.requests.map((r) => r.json.messages.length), [3, 3]);
  const result = await client.flush();
  assert.deepEqual(server.requests.map((r) => r.json.messages.length), [3, 3, 1]);
  assert.deepEqual(server.requests.flatMap(ids), sent, 'every event once, in order');
  assert.equal(result.accepted, 1, 'flush reports the events that were still pending');
  assert.equal(client.pending, 0);
  await server.close();
});

test('a partial batch is sent after flushIntervalMs', async () => {
  const server = await edge();
  const client = createClient(options(server.url, { batchSize: 50, flushIntervalMs: 200 }));
  const start = Date.now();
  client.sendEvent({ a: 1 });
  await sleep(50);
  client.sendEvent({ a: 2 });
  await sleep(80);
  assert.equal(server.requests.length, 0, 'not before the interval');
  await server.waitFor(1);
  const waited = server.requests[0].at - start;
  assert.ok(waited >= 190 && waited < 1500, `sent after ${waited} ms`);
  assert.equal(server.requests[0].json.messages.length, 2, 'both events in one request');
  await client.close();
  await server.close();
});

test('the envelope is seed 002 message: header, xdmMeta, xdmEntity with ids and identities', async () => {
  const server = await edge();
  const client = createClient(
    options(server.url, { ecid: '12345678901234567890123456789012345678', schemaVersion: 2, sandbox: 'dev' }),
  );
  const generated = client.sendEvent({ eventType: 'web.webpagedetails.pageViews', web: { webPageDetails: { name: 'home' } } });
  client.sendEvent({ _id: 'own-id', timestamp: '2026-01-02T03:04:05Z' }, { datasetId: 'other-ds' });
  client.setIdentity('CRMID', 'crm-1', { primary: true, authenticatedState: 'authenticated' });
  client.sendEvent({ identityMap: { Email: [{ id: 'a@example.com' }] } });
  await client.flush();
  const request = server.requests[0];
  assert.equal(request.method, 'POST');
  assert.equal(request.url, '/collection/batch/stream');
  assert.equal(request.headers['content-type'], 'application/json');
  assert.equal(request.headers['x-sandbox-name'], 'dev');
  assert.equal(request.headers.authorization, undefined, 'no token, no header');
  const [first, second, third] = request.json.messages;
  const schemaRef = {
    id: 'https://ns.adobe.com/acme/schemas/web',
    contentType: 'application/vnd.adobe.xed-full+json;version=2',
  };
  assert.deepEqual(first.header.schemaRef, schemaRef);
  assert.equal(first.header.imsOrgId, 'ACME@AdobeOrg');
  assert.equal(first.header.datasetId, 'ds1');
  assert.match(first.header.source.name, /^@cdp\/web-sdk\/\d+\.\d+\.\d+$/);
  assert.deepEqual(first.body.xdmMeta, { schemaRef });
  const entity = first.body.xdmEntity;
  assert.equal(entity._id, generated);
  assert.match(entity._id, UUID);
  assert.ok(!Number.isNaN(Date.parse(entity.timestamp)) && entity.timestamp.endsWith('Z'), entity.timestamp);
  assert.deepEqual(entity.web, { webPageDetails: { name: 'home' } });
  assert.deepEqual(entity.identityMap, { ECID: [{ id: '12345678901234567890123456789012345678', primary: true }] });

  assert.equal(second.header.datasetId, 'other-ds', 'per-event dataset');
  assert.equal(second.body.xdmEntity._id, 'own-id', 'an event keeps its own _id');
  assert.equal(second.body.xdmEntity.timestamp, '2026-01-02T03:04:05Z');

  assert.deepEqual(third.body.xdmEntity.identityMap, {
    Email: [{ id: 'a@example.com', primary: false }],
    CRMID: [{ id: 'crm-1', primary: true, authenticatedState: 'authenticated' }],
    ECID: [{ id: '12345678901234567890123456789012345678', primary: false }],
  });
  await server.close();
});

test('503 is retried with exponential back-off and full jitter', async () => {
  const server = await edge((req, i) => (i < 3 ? problem(503, 'broker unavailable') : accept(req)));
  const retries = [];
  const client = createClient(options(server.url, { retryBaseMs: 60, onRetry: (r) => retries.push(r) }));
  const id = client.sendEvent({ a: 1 });
  const result = await client.flush();
  assert.equal(server.requests.length, 4);
  assert.deepEqual(server.requests.map(ids), [[id], [id], [id], [id]], 'the same event each time');
  assert.deepEqual(retries.map((r) => [r.status, r.attempt]), [[503, 1], [503, 2], [503, 3]]);
  retries.forEach((r, n) => {
    assert.ok(r.delayMs >= 0 && r.delayMs <= 60 * 2 ** n, `retry ${n + 1} waits ${r.delayMs} ≤ ${60 * 2 ** n}`);
    const gap = server.requests[n + 1].at - server.requests[n].at;
    assert.ok(gap >= r.delayMs - 5, `retry ${n + 1} came ${gap} ms later, after a delay of ${r.delayMs}`);
  });
  assert.equal(result.accepted, 1);
  await server.close();
});

test("Retry-After is honoured on 429 (seconds)", async () => {
  const server = await edge((req, i) =>
    i === 0 ? problem(429, 'over the limit', { 'retry-after': '1' }) : accept(req),
  );
  const retries = [];
  const client = createClient(options(server.url, { retryBaseMs: 10, onRetry: (r) => retries.push(r) }));
  client.sendEvent({ a: 1 });
  await client.flush();
  assert.equal(server.requests.length, 2);
  const gap = server.requests[1].at - server.requests[0].at;
  assert.ok(gap >= 1000 && gap < 2000, `waited ${gap} ms for Retry-After: 1`);
  assert.equal(retries[0].status, 429);
  assert.equal(retries[0].retryAfterMs, 1000);
  await server.close();
});

test('Retry-After as an HTTP date is honoured too', async () => {
  let until;
  const server = await edge((req, i) => {
    if (i > 0) return accept(req);
    // HTTP dates have whole seconds: two seconds ahead is at least one second of waiting.
    until = Math.floor(Date.now() / 1000) * 1000 + 2000;
    return problem(503, 'unavailable', { 'retry-after': new Date(until).toUTCString() });
  });
  const client = createClient(options(server.url, { retryBaseMs: 10 }));
  client.sendEvent({ a: 1 });
  await client.flush();
  assert.equal(server.requests.length, 2);
  assert.ok(server.requests[1].at >= until - 20, `retried ${until - server.requests[1].at} ms early`);
  await server.close();
});

test('a network error is retried', async () => {
  const server = await edge((req, i) => (i === 0 ? { destroy: true } : accept(req)));
  const retries = [];
  const client = createClient(options(server.url, { retryBaseMs: 20, onRetry: (r) => retries.push(r) }));
  const id = client.sendEvent({ a: 1 });
  const result = await client.flush();
  assert.equal(server.requests.length, 2);
  assert.equal(retries.length, 1);
  assert.equal(retries[0].status, 0, 'no answer');
  assert.deepEqual(result.outcomes.map((o) => [o.id, o.status]), [[id, 'accepted']]);
  await server.close();
});

test('400 is not retried and reaches onError', async () => {
  const server = await edge(() => problem(400, 'expected a JSON object {"messages": [...]}'));
  const errors = [];
  const retries = [];
  const client = createClient(
    options(server.url, { retryBaseMs: 10, onError: (e) => errors.push(e), onRetry: (r) => retries.push(r) }),
  );
  const id = client.sendEvent({ a: 1 });
  const result = await client.flush();
  await sleep(100);
  assert.equal(server.requests.length, 1, 'sent once');
  assert.equal(retries.length, 0);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].kind, 'refused');
  assert.equal(errors[0].status, 400);
  assert.match(errors[0].message, /messages/);
  assert.deepEqual(errors[0].events.map((e) => e.id), [id]);
  assert.equal(result.failed, 1);
  await server.close();
});

test('retries stop after maxRetries', async () => {
  const server = await edge(() => problem(503, 'unavailable'));
  const errors = [];
  const client = createClient(options(server.url, { retryBaseMs: 5, maxRetries: 2, onError: (e) => errors.push(e) }));
  client.sendEvent({ a: 1 });
  const result = await client.flush();
  assert.equal(server.requests.length, 3, 'the request and two retries');
  assert.equal(errors.length, 1);
  assert.equal(errors[0].kind, 'retries-exhausted');
  assert.equal(errors[0].status, 503);
  assert.equal(result.failed, 1);
  await server.close();
});

test('the per-message errors of a 207 reach onError; accepted ones carry their xactionId', async () => {
  const server = await edge((req) => ({
    status: 207,
    body: {
      inletId: 'stream',
      batchId: '1:2:3',
      receivedTimeMs: 1,
      responses: [
        { xactionId: '1:2:3:0' },
        { statusCode: 400, message: 'inletId: [stream] imsOrgId: [ACME@AdobeOrg] Message has unknown xdm format' },
        { xactionId: '1:2:3:2' },
      ],
    },
  }));
  const errors = [];
  const results = [];
  const client = createClient(
    options(server.url, { onError: (e) => errors.push(e), onResult: (r) => results.push(r) }),
  );
  const [a, b, c] = [client.sendEvent({ n: 0 }), client.sendEvent({ n: 1 }), client.sendEvent({ n: 2 })];
  const result = await client.flush();
  assert.equal(server.requests.length, 1, 'a refused message is not sent again');
  assert.equal(errors.length, 1);
  assert.equal(errors[0].kind, 'rejected');
  assert.deepEqual(errors[0].events, [
    {
      id: b,
      status: 'rejected',
      statusCode: 400,
      message: 'inletId: [stream] imsOrgId: [ACME@AdobeOrg] Message has unknown xdm format',
    },
  ]);
  assert.equal(results.length, 1);
  assert.equal(results[0].batchId, '1:2:3');
  assert.deepEqual(
    results[0].accepted.map((o) => [o.id, o.xactionId]),
    [
      [a, '1:2:3:0'],
      [c, '1:2:3:2'],
    ],
  );
  assert.equal(result.accepted, 2);
  assert.equal(result.rejected, 1);
  await server.close();
});

for (const status of [401, 403]) {
  test(`${status} makes the SDK fetch a fresh token once and send again`, { timeout: 5000 }, async () => {
    const server = await edge((req) =>
      req.headers.authorization === 'Bearer good' ? accept(req) : problem(status, 'access token refused'),
    );
    let calls = 0;
    const client = createClient(
      options(server.url, {
        token: 'stale',
        getToken: async () => {
          calls += 1;
          return 'good';
        },
      }),
    );
    client.sendEvent({ a: 1 });
    const result = await client.flush();
    assert.deepEqual(
      server.requests.map((r) => r.headers.authorization),
      ['Bearer stale', 'Bearer good'],
    );
    assert.equal(calls, 1);
    assert.equal(result.accepted, 1);
    // The fresh token is kept for later requests.
    client.sendEvent({ a: 2 });
    await client.flush();
    assert.equal(server.requests[2].headers.authorization, 'Bearer good');
    assert.equal(calls, 1);
    await server.close();
  });
}

test('a refused refreshed token (401 then 403) is reported, not refreshed forever', { timeout: 5000 }, async () => {
  const server = await edge((req, i) => problem(i === 0 ? 401 : 403, 'access token refused: expired'));
  let calls = 0;
  const errors = [];
  const client = createClient(
    options(server.url, {
      token: 'stale',
      getToken: () => {
        calls += 1;
        return `fresh-${calls}`;
      },
      onError: (e) => errors.push(e),
    }),
  );
  client.sendEvent({ a: 1 });
  const result = await client.flush();
  await sleep(100);
  assert.deepEqual(
    server.requests.map((r) => r.headers.authorization),
    ['Bearer stale', 'Bearer fresh-1'],
  );
  assert.equal(calls, 1);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].kind, 'auth');
  assert.equal(errors[0].status, 403);
  assert.match(errors[0].message, /expired/);
  assert.equal(result.failed, 1);
  await server.close();
});

test('getToken alone is asked before the first request, and only once', async () => {
  const server = await edge();
  let calls = 0;
  const client = createClient(options(server.url, { batchSize: 1, getToken: () => `t${++calls}` }));
  client.sendEvent({ a: 1 });
  client.sendEvent({ a: 2 });
  await client.flush();
  assert.deepEqual(
    server.requests.map((r) => r.headers.authorization),
    ['Bearer t1', 'Bearer t1'],
  );
  await server.close();
});

test('a full queue refuses new events and reports them; it accepts again once drained', async () => {
  const server = await edge((req) => ({ ...accept(req), delayMs: 200 }));
  const errors = [];
  const client = createClient(
    options(server.url, { maxQueue: 3, batchSize: 2, flushIntervalMs: 60_000, onError: (e) => errors.push(e) }),
  );
  const kept = [1, 2, 3].map((n) => client.sendEvent({ n }));
  assert.ok(kept.every((id) => typeof id === 'string'));
  // Two are in flight, one queued: all three count.
  assert.equal(client.sendEvent({ n: 4 }), null);
  assert.equal(client.sendEvent({ _id: 'five' }), null);
  assert.equal(client.pending, 3);
  assert.deepEqual(errors.map((e) => [e.kind, e.events[0].id]).slice(1), [['queue-full', 'five']]);
  assert.ok(errors.every((e) => e.kind === 'queue-full'));
  const result = await client.flush();
  assert.equal(result.accepted, 3);
  assert.deepEqual(server.requests.flatMap(ids), kept, 'only the kept events were sent');
  assert.equal(typeof client.sendEvent({ n: 6 }), 'string', 'room again');
  await client.flush();
  await server.close();
});

test('flush resolves only once every event is settled, retries included', async () => {
  const server = await edge((req, i) =>
    i === 0 ? problem(503, 'unavailable', { 'retry-after': '0' }) : { ...accept(req), delayMs: 300 },
  );
  const client = createClient(options(server.url, { retryBaseMs: 10 }));
  const id = client.sendEvent({ a: 1 });
  // What the server had done when flush resolved.
  const result = await client.flush().then((r) => ({
    ...r,
    requests: server.requests.length,
    answered: server.requests.map((q) => q.answeredAt !== undefined),
  }));
  assert.equal(result.requests, 2, 'the 503 and its retry');
  assert.deepEqual(result.answered, [true, true], 'the delayed answer was written before flush resolved');
  assert.deepEqual(result.outcomes.map((o) => [o.id, o.status]), [[id, 'accepted']]);
  await server.close();
});

test('flush waits for the events queued before it, not after', async () => {
  const server = await edge((req, i) => (i === 0 ? accept(req) : { ...accept(req), delayMs: 400 }));
  const client = createClient(options(server.url, { batchSize: 1 }));
  const first = client.sendEvent({ a: 1 });
  const flushing = client.flush();
  client.sendEvent({ a: 2 });
  const result = await flushing.then((r) => ({ ...r, secondAnswered: server.requests[1]?.answeredAt !== undefined }));
  assert.equal(result.secondAnswered, false, 'not held up by the slow second request');
  assert.deepEqual(result.outcomes.map((o) => o.id), [first]);
  assert.equal((await client.flush()).accepted, 1);
  await server.close();
});

test('invalid events are refused at once', async () => {
  const errors = [];
  const client = createClient(options('http://127.0.0.1:9', { onError: (e) => errors.push(e), maxBatchBytes: 1000 }));
  assert.equal(client.sendEvent(null), null);
  assert.equal(client.sendEvent([1, 2]), null);
  const cyclic = { a: 1 };
  cyclic.self = cyclic;
  assert.equal(client.sendEvent(cyclic), null);
  assert.equal(client.sendEvent({ big: 'x'.repeat(2000) }), null);
  assert.deepEqual(
    errors.map((e) => e.kind),
    ['invalid-event', 'invalid-event', 'invalid-event', 'invalid-event'],
  );
  assert.equal(client.pending, 0);
  assert.throws(() => createClient({ edgeUrl: 'http://x' }), /streamId is required/);
  // The edge refuses a batch of more than 5000 messages whole: such a size is a configuration error.
  assert.throws(() => createClient(options('http://x', { batchSize: 5001 })), /batchSize must be at most 5000/);
  await createClient(options('http://x', { batchSize: 5000 })).close();
});
