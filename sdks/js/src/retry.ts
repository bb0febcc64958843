// When to send again: exponential back-off with full jitter, and the server's Retry-After.

/** A server asking for more than this is waited for this long at most, so a page is not stuck. */
export const MAX_RETRY_AFTER_MS = 5 * 60 * 1000;

/**
 * Statuses worth sending the same request again for: throttled (429), unavailable (503: the
 * edge accepted nothing), and gateways that lost the answer. Not 500: the edge says a 500 is a
 * bug, which the same request would hit again.
 */
export function isRetryable(status: number): boolean {
  return status === 408 || status === 429 || status === 502 || status === 503 || status === 504;
}

/**
 * `Retry-After` in milliseconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3); `undefined`
 * when absent or unreadable. Dates in the past mean "now".
 */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (value == null) return undefined;
  const text = value.trim();
  if (text === '') return undefined;
  if (/^\d+$/.test(text)) return Math.min(Number(text) * 1000, MAX_RETRY_AFTER_MS);
  // HTTP dates name their day and month; Date.parse would also take "-1" or "1.5" for dates.
  if (!/[a-z]{3}/i.test(text)) return undefined;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.min(Math.max(0, at - now), MAX_RETRY_AFTER_MS);
}

/**
 * The wait before retry number `attempt` (0 for the first retry). Without `Retry-After`: full
 * jitter, uniform in [0, min(cap, base · 2^attempt)], so clients that failed together do not
 * come back together. With it: never sooner than asked, plus up to a tenth more at random for
 * the same reason.
 */
export function retryDelay(
  attempt: number,
  baseMs: number,
  capMs: number,
  retryAfterMs: number | undefined,
  random: () => number = Math.random,
): number {
  if (retryAfterMs !== undefined) return Math.round(retryAfterMs + random() * retryAfterMs * 0.1);
  const ceiling = Math.min(capMs, baseMs * 2 ** attempt);
  return Math.round(random() * ceiling);
}
