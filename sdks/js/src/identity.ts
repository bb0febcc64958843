// Identifiers: event ids, the first-party ECID cookie, and identity maps.

/** One identity of an XDM `identityMap` entry. */
export interface Identity {
  id: string;
  primary?: boolean;
  authenticatedState?: 'ambiguous' | 'authenticated' | 'loggedOut';
}

/** XDM `identityMap`: namespace code (`ECID`, `CRMID`, `Email`, …) → identities. */
export type IdentityMap = Record<string, Identity[]>;

export const ECID_NAMESPACE = 'ECID';
export const ECID_COOKIE = 'cdp_ecid';
/** One year: the cookie is written again on every page load, so it lasts while people return. */
export const ECID_MAX_AGE_SECONDS = 365 * 24 * 60 * 60;
const ECID_DIGITS = 38;
const ECID_PATTERN = /^\d{38}$/;

function randomBytes(n: number): Uint8Array {
  const bytes = new Uint8Array(n);
  // Web Crypto's getRandomValues exists on insecure (http) pages too, unlike randomUUID.
  globalThis.crypto.getRandomValues(bytes);
  return bytes;
}

/** A random (version 4) UUID. */
export function uuid(): string {
  const b = randomBytes(16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** 38 random decimal digits, the shape of an Experience Cloud ID. */
export function newEcid(): string {
  let digits = '';
  while (digits.length < ECID_DIGITS) {
    for (const byte of randomBytes(ECID_DIGITS)) {
      // Bytes of 250 and above would make 0–5 more likely than 6–9.
      if (byte < 250 && digits.length < ECID_DIGITS) digits += String(byte % 10);
    }
  }
  return digits;
}

export function isEcid(value: unknown): value is string {
  return typeof value === 'string' && ECID_PATTERN.test(value);
}

interface CookieDocument {
  cookie: string;
}

function cookieDocument(): CookieDocument | undefined {
  const doc = (globalThis as { document?: CookieDocument }).document;
  return doc && typeof doc.cookie === 'string' ? doc : undefined;
}

function readCookie(doc: CookieDocument, name: string): string | undefined {
  for (const part of doc.cookie.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/**
 * The visitor's ECID: the one in the first-party cookie when there is one, else a new one that
 * is stored there. The cookie is written again every time, so its year counts from the last
 * visit. Without a document (Node.js) or cookies (a sandboxed frame), a new id per client.
 */
export function loadEcid(useCookie: boolean): string {
  const doc = useCookie ? cookieDocument() : undefined;
  if (!doc) return newEcid();
  try {
    const existing = readCookie(doc, ECID_COOKIE);
    const ecid = isEcid(existing) ? existing : newEcid();
    const secure =
      (globalThis as { location?: { protocol?: string } }).location?.protocol === 'https:' ? '; Secure' : '';
    doc.cookie = `${ECID_COOKIE}=${ecid}; Max-Age=${ECID_MAX_AGE_SECONDS}; Path=/; SameSite=Lax${secure}`;
    return ecid;
  } catch {
    // document.cookie throws in sandboxed frames and on opaque origins.
    return newEcid();
  }
}

/**
 * The event's identity map with the client's identities and the ECID added. Exactly one
 * identity ends up primary: the event's own primary if it has one, else the client's (set
 * with `setIdentity(…, { primary: true })`), else the ECID.
 */
export function mergeIdentities(
  own: unknown,
  client: IdentityMap,
  ecid: string,
): IdentityMap {
  const merged: IdentityMap = {};
  const add = (namespace: string, identity: Identity) => {
    const list = (merged[namespace] ??= []);
    const same = list.find((i) => i.id === identity.id);
    if (same) {
      if (identity.primary) same.primary = true;
      return;
    }
    list.push({ ...identity });
  };
  if (own && typeof own === 'object' && !Array.isArray(own)) {
    for (const [namespace, list] of Object.entries(own as Record<string, unknown>)) {
      if (!Array.isArray(list)) continue;
      for (const identity of list) {
        if (identity && typeof identity === 'object' && typeof (identity as Identity).id === 'string') {
          add(namespace, identity as Identity);
        }
      }
    }
  }
  const all = () => Object.values(merged).flat();
  const ownPrimary = all().some((i) => i.primary === true);
  for (const [namespace, list] of Object.entries(client)) {
    for (const identity of list) add(namespace, ownPrimary ? { ...identity, primary: false } : identity);
  }
  add(ECID_NAMESPACE, { id: ecid, primary: false });
  const primaries = all().filter((i) => i.primary === true);
  if (primaries.length === 0) {
    const ecidEntry = merged[ECID_NAMESPACE].find((i) => i.id === ecid);
    if (ecidEntry) ecidEntry.primary = true;
  }
  // Should the event itself name several, the first stays primary.
  for (const extra of all().filter((i) => i.primary === true).slice(1)) extra.primary = false;
  for (const identity of all()) identity.primary = identity.primary === true;
  return merged;
}
