// A real HTTP server for the SDK's tests, answering what each test scripts and recording every
// request (time, headers, parsed body).
import { createServer } from 'node:http';

/**
 * `answer(request, index)` returns `{ status, headers?, body? (object or string), delayMs?,
 * destroy? }`; by default every message is accepted (207).
 */
export async function edge(answer = accept) {
  const requests = [];
  const waiters = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let json;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      const request = { at: Date.now(), method: req.method, url: req.url, headers: req.headers, text, json };
      requests.push(request);
      for (const w of waiters.splice(0)) w();
      const plan = (await answer(request, requests.length - 1)) ?? accept(request);
      if (plan.delayMs) await sleep(plan.delayMs);
      if (plan.destroy) {
        req.socket.destroy();
        return;
      }
      const body = plan.body === undefined ? '' : typeof plan.body === 'string' ? plan.body : JSON.stringify(plan.body);
      request.answeredAt = Date.now();
      res.writeHead(plan.status, { 'content-type': 'application/json', ...(plan.headers ?? {}) });
      res.end(body);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  // A test that fails before closing its server must not keep the runner from exiting.
  server.unref();
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    /** Resolves once `n` requests arrived (fails the test after `timeoutMs`). */
    async waitFor(n, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (requests.length < n) {
        if (Date.now() > deadline) throw new Error(`expected ${n} requests, got ${requests.length}`);
        await new Promise((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 20);
        });
      }
      return requests;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(resolve);
      }),
  };
}

/** 207 accepting every message of the request. */
export function accept(request) {
  const messages = request.json?.messages ?? [];
  return {
    status: 207,
    body: {
      inletId: 'stream',
      batchId: `b${request.at}`,
      receivedTimeMs: request.at,
      responses: messages.map((_, i) => ({ xactionId: `b${request.at}:${i}` })),
    },
  };
}

export function problem(status, detail, headers = {}) {
  return { status, headers: { 'content-type': 'application/problem+json', ...headers }, body: { status, detail } };
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Options every test client shares, pointed at `url`. */
export function options(url, extra = {}) {
  return {
    edgeUrl: url,
    streamId: 'stream',
    orgId: 'ACME@AdobeOrg',
    datasetId: 'ds1',
    schemaId: 'https://ns.adobe.com/acme/schemas/web',
    flushOnPageHide: false,
    cookie: false,
    ...extra,
  };
}

/** The `_id`s of the messages of a request. */
export const ids = (request) => request.json.messages.map((m) => m.body.xdmEntity._id);
