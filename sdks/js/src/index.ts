// @cdp/web-sdk: XDM events from a web page (or Node.js) to the cdp edge's
// POST /collection/batch/{streamId}, batched, retried, and flushed when the page is hidden.
//
// Nothing here touches `window`, `document` or `navigator` until a client is created, so the
// module imports in Node.js and in server-side rendering.

import { ECID_NAMESPACE, type Identity, type IdentityMap, loadEcid, mergeIdentities, uuid } from './identity.js';
import { isRetryable, parseRetryAfter, retryDelay } from './retry.js';

export {
  ECID_COOKIE,
  ECID_MAX_AGE_SECONDS,
  ECID_NAMESPACE,
  type Identity,
  type IdentityMap,
  isEcid,
  newEcid,
  uuid,
} from './identity.js';
export { isRetryable, parseRetryAfter, retryDelay, MAX_RETRY_AFTER_MS } from './retry.js';

export const SDK_NAME = '@cdp/web-sdk';
export const SDK_VERSION = '0.1.0';

/** The edge refuses bodies over 1 MB; a batch stays below with room for the envelope. */
export const DEFAULT_MAX_BATCH_BYTES = 900_000;
/** The edge's default cap on messages per batch request (`edge.collection_max_messages`); it refuses a larger batch whole (413). */
export const EDGE_MAX_MESSAGES = 5000;
/**
 * Browsers allow at most 64 KiB of request bodies in flight with `keepalive` per page (the
 * Fetch standard's limit; Chromium counts sendBeacon in it too). A little is kept back for
 * requests already under way.
 */
export const KEEPALIVE_BUDGET_BYTES = 64 * 1024 - 1024;

/** An XDM ExperienceEvent (or any XDM entity): `_id` and `timestamp` are filled in if missing. */
export type XdmEntity = Record<string, unknown> & {
  _id?: string;
  timestamp?: string | Date;
  identityMap?: IdentityMap;
};

export interface ClientOptions {
  /** Where the edge listens, e.g. `https://edge.example.com` (no trailing path). */
  edgeUrl: string;
  /** The stream (connection) id: the `{id}` of `/collection/batch/{id}`. */
  streamId: string;
  /** The org the stream belongs to (`header.imsOrgId`). */
  orgId: string;
  /** The dataset events land in (`header.datasetId`). */
  datasetId: string;
  /** The XDM schema of the dataset (`schemaRef.id`). */
  schemaId: string;
  /** Schema version for `schemaRef.contentType` (default 1). */
  schemaVersion?: number;
  /** The whole `schemaRef.contentType`; overrides `schemaVersion`. */
  contentType?: string;
  /** A bearer token for streams that require authentication. */
  token?: string;
  /**
   * Returns a fresh token: called when the client is created if there is no `token`, and once
   * per batch when the edge answers 401 or 403.
   */
  getToken?: () => string | Promise<string>;
  /** Sent as `x-sandbox-name` (the edge refuses a sandbox other than the stream's). */
  sandbox?: string;
  /** Events per request; a full batch is sent at once (default 50, at most 5000: the edge refuses larger batches whole). */
  batchSize?: number;
  /** Bytes per request at most (default 900 000; the edge's limit is 1 MB). */
  maxBatchBytes?: number;
  /** A queued event waits at most this long before it is sent (default 1000 ms). */
  flushIntervalMs?: number;
  /** Events held at most (queued, in flight or waiting to retry); more are refused (default 1000). */
  maxQueue?: number;
  /** Retries of a request after 429, 503 or a network error before its events fail (default 5). */
  maxRetries?: number;
  /** Back-off base: retry n waits up to base · 2^n (default 500 ms). */
  retryBaseMs?: number;
  /** Back-off ceiling (default 30 000 ms). */
  retryMaxMs?: number;
  /** Use this ECID instead of the cookie's (e.g. one known to a server). */
  ecid?: string;
  /** Keep the ECID in the first-party `cdp_ecid` cookie (default true where there is a document). */
  cookie?: boolean;
  /** Send what is queued when the page is hidden or left (default true in browsers). */
  flushOnPageHide?: boolean;
  /** `header.source.name` of every message (default `@cdp/web-sdk/<version>`). */
  sourceName?: string;
  /** The fetch to use (default the global one). */
  fetch?: typeof fetch;
  /** After every answered request (2xx): which events were accepted and which refused. */
  onResult?: (result: BatchResult) => void;
  /** Events that will not be delivered, and why. */
  onError?: (error: SdkError) => void;
  /** Before each retry: why and how long the SDK waits. */
  onRetry?: (retry: RetryInfo) => void;
  /** When the page is hidden: how the queued events were handed to the browser. */
  onPageHide?: (info: PageHideInfo) => void;
}

/** Per event, where it ended. `beacon`: handed to `navigator.sendBeacon`, whose answer no page sees. */
export type EventStatus = 'accepted' | 'rejected' | 'failed' | 'beacon';

export interface EventOutcome {
  /** The event's `_id`. */
  id: string;
  status: EventStatus;
  /** The edge's id for an accepted message (`batchId:index`). */
  xactionId?: string;
  /** The HTTP status that refused the event (per message in a 207, or the request's). */
  statusCode?: number;
  message?: string;
}

export interface BatchResult {
  /** The HTTP status of the answer (207 from the batch endpoint). */
  status: number;
  batchId?: string;
  accepted: EventOutcome[];
  rejected: EventOutcome[];
  /** Requests it took, retries and token refresh included. */
  attempts: number;
  /** Whether it was sent with `keepalive` (the page-hide flush). */
  keepalive: boolean;
}

export type ErrorKind =
  /** Refused per message in a 207 (e.g. an unknown dataset or a wrong org). */
  | 'rejected'
  /** The whole request refused (400, 404, 413, 415, 500, …): sending it again would not help. */
  | 'refused'
  /** 401/403 with a refreshed token too, or `getToken` failed. */
  | 'auth'
  /** Still 429/503/network errors after `maxRetries` retries. */
  | 'retries-exhausted'
  /** `maxQueue` events are held already. */
  | 'queue-full'
  /** Not an object, not serializable, or larger than a request may be. */
  | 'invalid-event';

export interface SdkError {
  kind: ErrorKind;
  message: string;
  /** The HTTP status, when there was an answer. */
  status?: number;
  events: EventOutcome[];
}

export interface RetryInfo {
  /** The status that caused the retry, or 0 for a network error. */
  status: number;
  /** 1 for the first retry of this request. */
  attempt: number;
  delayMs: number;
  /** What `Retry-After` asked for, when the answer had one. */
  retryAfterMs?: number;
  events: number;
}

export interface PageHideInfo {
  /** Events sent with `fetch(…, { keepalive: true })`. */
  keepalive: number;
  /** Events handed to `navigator.sendBeacon`. */
  beacon: number;
  /** Events kept queued (over the keepalive budget, or no way to send them): lost if the page goes. */
  left: number;
  /** Requests made. */
  requests: number;
}

export interface FlushResult {
  accepted: number;
  rejected: number;
  failed: number;
  beacon: number;
  outcomes: EventOutcome[];
}

export interface SendOptions {
  /** Another dataset of the stream's org for this event (`header.datasetId`). */
  datasetId?: string;
}

export interface SetIdentityOptions {
  primary?: boolean;
  authenticatedState?: Identity['authenticatedState'];
}

export interface Client {
  /** Queues an event; returns its `_id`, or `null` when it was refused (reported to `onError`). */
  sendEvent(event: XdmEntity, options?: SendOptions): string | null;
  /** Adds an identity to every later event's `identityMap`; `id` null removes the namespace. */
  setIdentity(namespace: string, id: string | null, options?: SetIdentityOptions): void;
  /** Sends everything queued now; resolves when each of those events is accepted or finally refused. */
  flush(): Promise<FlushResult>;
  /** Flushes, then stops listening for page hide. */
  close(): Promise<FlushResult>;
  /** The visitor's ECID (kept in the `cdp_ecid` cookie). */
  readonly ecid: string;
  /** Events held: queued, in flight or waiting to retry. */
  readonly pending: number;
}

interface Item {
  seq: number;
  id: string;
  json: string;
  bytes: number;
  queuedAt: number;
  settle: (outcome: EventOutcome) => void;
  done: Promise<EventOutcome>;
}

/** A batch waiting out its back-off, which a page-hide flush may take over. */
interface Waiting {
  items: Item[];
  taken: boolean;
  wake: () => void;
}

class Failure {
  constructor(
    readonly kind: ErrorKind,
    readonly message: string,
    readonly status?: number,
  ) {}
}

const encoder = new TextEncoder();

function byteLength(text: string): number {
  return encoder.encode(text).length;
}

function body(items: Item[]): string {
  return `{"messages":[${items.map((i) => i.json).join(',')}]}`;
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0) throw new TypeError(`${name} must be a non-negative number`);
  return value;
}

/** An answer whose body is not needed: released, so its connection can serve the next request. */
function discard(res: Response): void {
  res.body?.cancel().catch(() => {});
}

async function problemDetail(res: Response): Promise<string> {
  try {
    const text = await res.text();
    try {
      const json = JSON.parse(text) as { detail?: unknown; message?: unknown };
      if (typeof json.detail === 'string') return json.detail;
      if (typeof json.message === 'string') return json.message;
    } catch {
      // Not JSON: the text itself.
    }
    return text.slice(0, 500) || `HTTP ${res.status}`;
  } catch {
    return `HTTP ${res.status}`;
  }
}

class CdpClient implements Client {
  readonly ecid: string;
  private readonly opts: Required<
    Pick<
      ClientOptions,
      | 'batchSize'
      | 'maxBatchBytes'
      | 'flushIntervalMs'
      | 'maxQueue'
      | 'maxRetries'
      | 'retryBaseMs'
      | 'retryMaxMs'
    >
  >;
  private readonly url: string;
  private readonly contentType: string;
  private readonly sourceName: string;
  private readonly fetchImpl: typeof fetch;
  private token: string | undefined;
  private tokenRequest: Promise<void> | undefined;
  private identities: IdentityMap = {};
  private queue: Item[] = [];
  private held = new Map<number, Item>();
  private seq = 0;
  private dueSeq = 0;
  private sending = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** Batches waiting out a back-off (the pump's, and a page-hide request's that met a 429). */
  private waiting = new Set<Waiting>();
  private keepaliveInFlight = 0;
  private detach: (() => void) | undefined;

  constructor(private readonly options: ClientOptions) {
    for (const key of ['edgeUrl', 'streamId', 'orgId', 'datasetId', 'schemaId'] as const) {
      if (typeof options[key] !== 'string' || options[key] === '') {
        throw new TypeError(`createClient: ${key} is required`);
      }
    }
    if (options.batchSize !== undefined && options.batchSize > EDGE_MAX_MESSAGES) {
      throw new TypeError(`batchSize must be at most ${EDGE_MAX_MESSAGES}: the edge refuses larger batches whole`);
    }
    this.opts = {
      batchSize: Math.max(1, Math.floor(positive(options.batchSize, 50, 'batchSize'))),
      maxBatchBytes: positive(options.maxBatchBytes, DEFAULT_MAX_BATCH_BYTES, 'maxBatchBytes'),
      flushIntervalMs: positive(options.flushIntervalMs, 1000, 'flushIntervalMs'),
      maxQueue: Math.max(1, Math.floor(positive(options.maxQueue, 1000, 'maxQueue'))),
      maxRetries: Math.floor(positive(options.maxRetries, 5, 'maxRetries')),
      retryBaseMs: positive(options.retryBaseMs, 500, 'retryBaseMs'),
      retryMaxMs: positive(options.retryMaxMs, 30_000, 'retryMaxMs'),
    };
    const fetchImpl = options.fetch ?? (typeof fetch === 'function' ? fetch : undefined);
    if (!fetchImpl) throw new TypeError('createClient: no fetch in this environment; pass options.fetch');
    // The global fetch must be called with the global object as `this`.
    this.fetchImpl = options.fetch ?? ((input, init) => fetchImpl(input, init));
    this.url = `${options.edgeUrl.replace(/\/+$/, '')}/collection/batch/${encodeURIComponent(options.streamId)}`;
    this.contentType =
      options.contentType ?? `application/vnd.adobe.xed-full+json;version=${options.schemaVersion ?? 1}`;
    this.sourceName = options.sourceName ?? `${SDK_NAME}/${SDK_VERSION}`;
    this.token = options.token;
    // Asked now rather than at the first request: a page-hide flush has no time to wait for it.
    if (this.token === undefined && options.getToken) this.refreshToken().catch(() => {});
    this.ecid = options.ecid ?? loadEcid(options.cookie !== false);
    if (options.flushOnPageHide !== false) this.listenForPageHide();
  }

  get pending(): number {
    return this.held.size;
  }

  setIdentity(namespace: string, id: string | null, options: SetIdentityOptions = {}): void {
    if (namespace === ECID_NAMESPACE) throw new TypeError('the ECID is managed by the SDK');
    if (id === null) {
      delete this.identities[namespace];
      return;
    }
    if (options.primary) {
      for (const list of Object.values(this.identities)) for (const i of list) i.primary = false;
    }
    const identity: Identity = { id, primary: options.primary === true };
    if (options.authenticatedState) identity.authenticatedState = options.authenticatedState;
    const list = (this.identities[namespace] ??= []);
    const index = list.findIndex((i) => i.id === id);
    if (index >= 0) list[index] = identity;
    else list.push(identity);
  }

  sendEvent(event: XdmEntity, options: SendOptions = {}): string | null {
    const refuse = (kind: ErrorKind, message: string, id: string) => {
      this.report({ kind, message, events: [{ id, status: 'failed', message }] });
      return null;
    };
    if (!event || typeof event !== 'object' || Array.isArray(event)) {
      return refuse('invalid-event', 'an event is an XDM object', '');
    }
    const id = typeof event._id === 'string' && event._id !== '' ? event._id : uuid();
    if (this.held.size >= this.opts.maxQueue) {
      return refuse('queue-full', `${this.opts.maxQueue} events are waiting to be sent already`, id);
    }
    const timestamp =
      event.timestamp instanceof Date
        ? event.timestamp.toISOString()
        : typeof event.timestamp === 'string'
          ? event.timestamp
          : new Date().toISOString();
    const entity = {
      ...event,
      _id: id,
      timestamp,
      identityMap: mergeIdentities(event.identityMap, this.identities, this.ecid),
    };
    const schemaRef = { id: this.options.schemaId, contentType: this.contentType };
    const message = {
      header: {
        schemaRef,
        imsOrgId: this.options.orgId,
        datasetId: options.datasetId ?? this.options.datasetId,
        source: { name: this.sourceName },
        createdAt: Date.now(),
      },
      body: { xdmMeta: { schemaRef }, xdmEntity: entity },
    };
    let json: string;
    try {
      json = JSON.stringify(message);
    } catch (e) {
      return refuse('invalid-event', `the event cannot be encoded as JSON: ${String(e)}`, id);
    }
    const bytes = byteLength(json);
    if (bytes + 20 > this.opts.maxBatchBytes) {
      return refuse('invalid-event', `the event is ${bytes} bytes, more than a request may carry`, id);
    }
    let settle!: (o: EventOutcome) => void;
    const done = new Promise<EventOutcome>((resolve) => (settle = resolve));
    const item: Item = { seq: ++this.seq, id, json, bytes, queuedAt: Date.now(), settle, done };
    item.settle = (outcome) => {
      if (!this.held.delete(item.seq)) return;
      settle(outcome);
    };
    this.held.set(item.seq, item);
    this.queue.push(item);
    if (this.queue.length >= this.opts.batchSize) void this.pump();
    else this.schedule();
    return id;
  }

  async flush(): Promise<FlushResult> {
    const items = [...this.held.values()];
    // Due now, but a batch waiting out a back-off keeps waiting: the edge asked for that.
    this.dueSeq = this.seq;
    void this.pump();
    const outcomes = await Promise.all(items.map((i) => i.done));
    const count = (s: EventStatus) => outcomes.filter((o) => o.status === s).length;
    return {
      accepted: count('accepted'),
      rejected: count('rejected'),
      failed: count('failed'),
      beacon: count('beacon'),
      outcomes,
    };
  }

  async close(): Promise<FlushResult> {
    this.detach?.();
    this.detach = undefined;
    return this.flush();
  }

  private report(error: SdkError): void {
    try {
      this.options.onError?.(error);
    } catch {
      // A throwing callback must not stop delivery of the other events.
    }
  }

  private schedule(): void {
    if (this.timer !== undefined || this.queue.length === 0) return;
    const wait = Math.max(0, this.queue[0].queuedAt + this.opts.flushIntervalMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.dueSeq = this.seq;
      void this.pump();
    }, wait);
    // In Node.js a queue waiting for its interval must not keep the process alive (call flush or
    // close before exiting); the retries that flush awaits do keep it.
    (this.timer as { unref?: () => void }).unref?.();
  }

  /** The next batch to send now, if any: a full one, or the oldest events once they are due. */
  private take(): Item[] | undefined {
    if (this.queue.length === 0) return undefined;
    if (this.queue.length < this.opts.batchSize && this.queue[0].seq > this.dueSeq) return undefined;
    const batch: Item[] = [];
    let size = 20;
    while (batch.length < this.opts.batchSize && this.queue.length > 0) {
      const next = this.queue[0];
      if (batch.length > 0 && size + next.bytes + 1 > this.opts.maxBatchBytes) break;
      size += next.bytes + 1;
      batch.push(next);
      this.queue.shift();
    }
    return batch;
  }

  /** One request at a time: a throttled stream is not hit harder, and events keep their order. */
  private async pump(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      for (let batch = this.take(); batch; batch = this.take()) {
        await this.deliver(batch, false);
      }
    } finally {
      this.sending = false;
    }
    if (this.timer !== undefined && this.queue.length === 0) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.schedule();
  }

  private headers(): Record<string, string> {
    const headers: Record<string, string> = { 'Content-Type': 'application/json' };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (this.options.sandbox) headers['x-sandbox-name'] = this.options.sandbox;
    return headers;
  }

  /** One `getToken` call at a time; callers that come while it runs share its answer. */
  private refreshToken(): Promise<void> {
    this.tokenRequest ??= this.callGetToken().finally(() => {
      this.tokenRequest = undefined;
    });
    return this.tokenRequest;
  }

  private async callGetToken(): Promise<void> {
    const getToken = this.options.getToken;
    if (!getToken) throw new Failure('auth', 'no getToken to refresh the token with');
    let token: string;
    try {
      token = await getToken();
    } catch (e) {
      throw new Failure('auth', `getToken failed: ${String(e)}`);
    }
    if (typeof token !== 'string' || token === '') throw new Failure('auth', 'getToken returned no token');
    this.token = token;
  }

  /**
   * Sends one batch until each of its events is settled: retried on 429, 503 and network errors
   * (with back-off), once more with a fresh token on 401/403, never on other refusals.
   * `keepalive` (page hide) sends the first attempt so that it outlives the page; should the
   * browser refuse that (over its budget), the events go back to the queue or to a beacon.
   */
  private async deliver(batch: Item[], keepalive: boolean): Promise<void> {
    let refreshed = false;
    let retries = 0;
    let attempts = 0;
    let pending = batch;
    for (;;) {
      try {
        if (this.token === undefined && this.options.getToken) await this.refreshToken();
      } catch (e) {
        this.fail(pending, e as Failure);
        return;
      }
      const text = body(pending);
      const useKeepalive = keepalive && attempts === 0;
      let res: Response | undefined;
      let networkError: unknown;
      attempts += 1;
      if (useKeepalive) this.keepaliveInFlight += byteLength(text);
      try {
        res = await this.fetchImpl(this.url, {
          method: 'POST',
          headers: this.headers(),
          body: text,
          keepalive: useKeepalive,
          credentials: 'omit',
        });
      } catch (e) {
        networkError = e;
      } finally {
        if (useKeepalive) this.keepaliveInFlight -= byteLength(text);
      }
      if (res && (res.status === 207 || (res.status >= 200 && res.status < 300))) {
        pending = await this.settleAnswer(pending, res, attempts, useKeepalive, retries);
        if (pending.length === 0) return;
      } else if (res && (res.status === 401 || res.status === 403) && !refreshed && this.options.getToken) {
        discard(res);
        refreshed = true;
        try {
          await this.refreshToken();
        } catch (e) {
          this.fail(pending, e as Failure);
          return;
        }
        continue;
      } else if (res && !isRetryable(res.status)) {
        const detail = await problemDetail(res);
        const kind: ErrorKind = res.status === 401 || res.status === 403 ? 'auth' : 'refused';
        this.fail(pending, new Failure(kind, detail, res.status));
        return;
      }
      // Retryable: 429, 503, … or no answer at all.
      const status = res?.status ?? 0;
      if (retries >= this.opts.maxRetries) {
        const why = res ? `HTTP ${status}` : `network error: ${String(networkError)}`;
        this.fail(pending, new Failure('retries-exhausted', `${why} after ${retries} retries`, res?.status));
        return;
      }
      const retryAfterMs = res ? parseRetryAfter(res.headers.get('Retry-After')) : undefined;
      if (res && !res.bodyUsed) discard(res);
      const delayMs = retryDelay(retries, this.opts.retryBaseMs, this.opts.retryMaxMs, retryAfterMs);
      retries += 1;
      try {
        this.options.onRetry?.({ status, attempt: retries, delayMs, retryAfterMs, events: pending.length });
      } catch {
        // A throwing callback must not stop delivery.
      }
      const waiting: Waiting = { items: pending, taken: false, wake: () => {} };
      this.waiting.add(waiting);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delayMs);
        waiting.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiting.delete(waiting);
      // The page-hide flush took these events over.
      if (waiting.taken) return;
    }
  }

  /** Settles what a 2xx answered; returns the events to send again (per-message 429/503). */
  private async settleAnswer(
    items: Item[],
    res: Response,
    attempts: number,
    keepalive: boolean,
    retries: number,
  ): Promise<Item[]> {
    let answer: { batchId?: unknown; responses?: unknown } | undefined;
    try {
      answer = (await res.json()) as typeof answer;
    } catch {
      answer = undefined;
    }
    const responses = Array.isArray(answer?.responses) ? (answer.responses as unknown[]) : undefined;
    const accepted: EventOutcome[] = [];
    const rejected: EventOutcome[] = [];
    const again: Item[] = [];
    items.forEach((item, index) => {
      const entry = responses?.[index] as { xactionId?: unknown; statusCode?: unknown; message?: unknown } | undefined;
      let outcome: EventOutcome;
      if (entry && typeof entry.xactionId === 'string') {
        outcome = { id: item.id, status: 'accepted', xactionId: entry.xactionId };
        accepted.push(outcome);
      } else if (entry && typeof entry.statusCode === 'number') {
        if (isRetryable(entry.statusCode) && retries < this.opts.maxRetries) {
          again.push(item);
          return;
        }
        outcome = {
          id: item.id,
          status: 'rejected',
          statusCode: entry.statusCode,
          message: typeof entry.message === 'string' ? entry.message : undefined,
        };
        rejected.push(outcome);
      } else {
        // A 2xx without a readable entry: the edge wrote what it accepted, so sending it again
        // could duplicate it; the event is reported, not retried.
        outcome = {
          id: item.id,
          status: 'rejected',
          statusCode: res.status,
          message: 'the edge answered without a result for this event',
        };
        rejected.push(outcome);
      }
      item.settle(outcome);
    });
    try {
      this.options.onResult?.({
        status: res.status,
        batchId: typeof answer?.batchId === 'string' ? answer.batchId : undefined,
        accepted,
        rejected,
        attempts,
        keepalive,
      });
    } catch {
      // A throwing callback must not stop delivery.
    }
    if (rejected.length > 0) {
      this.report({
        kind: 'rejected',
        message: `${rejected.length} of ${items.length} events refused by the edge`,
        status: res.status,
        events: rejected,
      });
    }
    return again;
  }

  private fail(items: Item[], failure: Failure): void {
    const events = items.map((item) => {
      const outcome: EventOutcome = {
        id: item.id,
        status: 'failed',
        statusCode: failure.status,
        message: failure.message,
      };
      item.settle(outcome);
      return outcome;
    });
    this.report({ kind: failure.kind, message: failure.message, status: failure.status, events });
  }

  private listenForPageHide(): void {
    const doc = (globalThis as { document?: Document }).document;
    const win = (globalThis as { window?: Window }).window;
    if (!doc || typeof doc.addEventListener !== 'function') return;
    const onVisibility = () => {
      if (doc.visibilityState === 'hidden') this.flushOnHide();
    };
    const onPageHide = () => this.flushOnHide();
    doc.addEventListener('visibilitychange', onVisibility);
    win?.addEventListener?.('pagehide', onPageHide);
    this.detach = () => {
      doc.removeEventListener('visibilitychange', onVisibility);
      win?.removeEventListener?.('pagehide', onPageHide);
    };
  }

  /**
   * The page may be going away: everything not yet in flight (the queue, and a batch waiting to
   * retry) goes now, in requests the browser completes after the page is gone. With a token:
   * `fetch` with `keepalive` (a beacon cannot carry Authorization). Without: `sendBeacon` with
   * a `text/plain` body, which needs no preflight. Both share 64 KiB per page; what does not
   * fit stays queued, and is sent as usual if the page comes back (bfcache, a tab switch).
   */
  private flushOnHide(): void {
    const stolen: Item[] = [];
    for (const waiting of this.waiting) {
      waiting.taken = true;
      waiting.wake();
      stolen.push(...waiting.items);
    }
    this.waiting.clear();
    const items = [...stolen, ...this.queue.splice(0)];
    const info: PageHideInfo = { keepalive: 0, beacon: 0, left: 0, requests: 0 };
    if (items.length === 0) return;
    const nav = (globalThis as { navigator?: Navigator }).navigator;
    const canBeacon = typeof nav?.sendBeacon === 'function' && typeof Blob === 'function';
    const needsToken = this.token !== undefined || this.options.getToken !== undefined;
    const canKeepalive = typeof Request === 'function' && 'keepalive' in Request.prototype;
    let budget = KEEPALIVE_BUDGET_BYTES - this.keepaliveInFlight;
    const left: Item[] = [];
    let index = 0;
    while (index < items.length) {
      // As many events as fit in what is left of the budget (and in a batch).
      const chunk: Item[] = [];
      let size = 20;
      while (index < items.length && chunk.length < this.opts.batchSize) {
        const next = items[index];
        if (size + next.bytes + 1 > Math.min(budget, this.opts.maxBatchBytes)) break;
        size += next.bytes + 1;
        chunk.push(next);
        index += 1;
      }
      if (chunk.length === 0) {
        left.push(...items.slice(index));
        break;
      }
      if (!needsToken && canBeacon) {
        let queued = false;
        try {
          queued = nav.sendBeacon(this.url, new Blob([body(chunk)], { type: 'text/plain;charset=UTF-8' }));
        } catch {
          queued = false;
        }
        if (queued) {
          budget -= size;
          info.beacon += chunk.length;
          info.requests += 1;
          for (const item of chunk) item.settle({ id: item.id, status: 'beacon' });
          continue;
        }
      }
      if (canKeepalive) {
        budget -= size;
        info.keepalive += chunk.length;
        info.requests += 1;
        void this.deliver(chunk, true);
        continue;
      }
      left.push(...chunk);
    }
    info.left = left.length;
    this.queue.unshift(...left);
    // Should the page stay (a tab switch), they go with the next batch.
    this.schedule();
    try {
      this.options.onPageHide?.(info);
    } catch {
      // A throwing callback must not stop delivery.
    }
  }
}

/** A client for one stream. In a browser it also keeps the ECID cookie and flushes on page hide. */
export function createClient(options: ClientOptions): Client {
  return new CdpClient(options);
}
