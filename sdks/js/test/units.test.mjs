// The pure parts: Retry-After, back-off bounds, ids.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { isEcid, isRetryable, newEcid, parseRetryAfter, retryDelay, uuid, MAX_RETRY_AFTER_MS } from '../dist/index.js';

test('Retry-After: seconds, HTTP dates, and nonsense', () => {
  const now = Date.parse('2026-11-27T10:00:00Z');
  assert.equal(parseRetryAfter('1', now), 1000);
  assert.equal(parseRetryAfter(' 30 ', now), 30_000);
  assert.equal(parseRetryAfter('Fri, 27 Nov 2026 10:00:05 GMT', now), 5000);
  assert.equal(parseRetryAfter('Fri, 27 Nov 2026 09:59:00 GMT', now), 0, 'a past date means now');
  assert.equal(parseRetryAfter('999999', now), MAX_RETRY_AFTER_MS, 'capped');
  for (const nonsense of [null, undefined, '', 'soon', '-1', '1.5']) {
    assert.equal(parseRetryAfter(nonsense, now), undefined, String(nonsense));
  }
});

test('back-off: full jitter under base · 2^n and the cap; Retry-After plus at most a tenth', () => {
  assert.equal(retryDelay(0, 100, 10_000, undefined, () => 0), 0);
  assert.equal(retryDelay(0, 100, 10_000, undefined, () => 0.999999), 100);
  assert.equal(retryDelay(3, 100, 10_000, undefined, () => 0.5), 400);
  assert.equal(retryDelay(10, 100, 10_000, undefined, () => 0.999999), 10_000, 'the cap');
  assert.equal(retryDelay(0, 100, 10_000, 2000, () => 0), 2000);
  assert.equal(retryDelay(5, 100, 10_000, 2000, () => 0.999999), 2200);
  assert.deepEqual(
    [400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 504].filter(isRetryable),
    [408, 429, 502, 503, 504],
  );
});

test('ids: v4 UUIDs and 38-digit ECIDs, different every time', () => {
  const uuids = new Set(Array.from({ length: 200 }, uuid));
  assert.equal(uuids.size, 200);
  for (const u of uuids) assert.match(u, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const ecids = new Set(Array.from({ length: 200 }, newEcid));
  assert.equal(ecids.size, 200);
  for (const e of ecids) assert.ok(isEcid(e), e);
  assert.equal(isEcid('123'), false);
  // Every digit turns up: no digit is left out by the way bytes become digits.
  const digits = new Set([...ecids].join(''));
  assert.equal(digits.size, 10);
});
