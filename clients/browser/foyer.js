// Foyer browser client: speaks foyer.v1.json (see docs/protocol.md).
//
// An ES module with no build step and no dependencies. Two clients share one
// connection core:
//
//   import { HostClient, GuestClient } from "/static/foyer.js";
//
//   const host = new HostClient({ token: "<jwt>" });
//   host.on("change", (waiting) => render(waiting));
//   host.connect();
//   await host.admit(guestId);
//
//   const guest = new GuestClient({ slug: "ada-lovelace", name: "Grace" });
//   guest.on("waiting", ({ position }) => ...);
//   guest.on("admitted", ({ meeting }) => location.assign(meeting.url));
//   guest.connect();
//
// Both reconnect on their own with exponential backoff and full jitter
// (delay = random(0, min(cap, base * 2^attempt))), keep the socket alive
// with `ping`, and a guest that drops comes back with `resume` (PROTOCOL.md:
// same guest, same place within 30 s).

export const SUBPROTOCOL = "foyer.v1.json";

/**
 * Close codes from PROTOCOL.md ("Errors") and docs/protocol.md (additions).
 * Names and values equal Python's `protocol.errors.CloseCode`
 * (tests/clients/test_browser_client.py checks it).
 */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  POLICY: 1008,
  TOO_LARGE: 1009,
  INTERNAL: 1011,
  SERVICE_RESTART: 1012,
  UNAUTHORIZED: 4001,
  UNKNOWN_LINK: 4004,
  HANDSHAKE_TIMEOUT: 4008,
  SLOW_CONSUMER: 4013,
  RATE_LIMITED: 4029,
  REPLACED: 4409,
  LOCKED: 4423,
});

/**
 * The link options a guest page passes on from its query string: Python's
 * `protocol.links.OPTION_NAMES`, in its order (the same test checks it).
 */
export const LINK_OPTIONS = Object.freeze([
  "title",
  "duration",
  "region",
  "relationship",
  "announce",
  "autodelete",
  "recording",
]);

/**
 * `guest_left.reason` values: Python's `protocol.lobby.LeftReason`, in its order
 * (tests/clients/test_browser_client.py checks it); `timed_out` is an addition.
 */
export const LEFT_REASONS = Object.freeze([
  "cancelled",
  "disconnected",
  "expired",
  "timed_out",
]);

/** An `error` frame (or a local failure) as an Error with a wire `code`. */
export class FoyerError extends Error {
  constructor(code, message, frame = null) {
    super(message || code);
    this.name = "FoyerError";
    this.code = code;
    this.frame = frame;
  }
}

/** Minimal event emitter: `on` returns a function that unsubscribes. */
export class Emitter {
  #handlers = new Map();

  on(type, handler) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, new Set());
    this.#handlers.get(type).add(handler);
    return () => this.off(type, handler);
  }

  once(type, handler) {
    const off = this.on(type, (...args) => {
      off();
      handler(...args);
    });
    return off;
  }

  off(type, handler) {
    this.#handlers.get(type)?.delete(handler);
  }

  emit(type, ...args) {
    for (const handler of [...(this.#handlers.get(type) ?? [])]) {
      try {
        handler(...args);
      } catch (err) {
        // One broken listener must not stop the connection or the others.
        setTimeout(() => {
          throw err;
        });
      }
    }
  }
}

/** Full-jitter exponential backoff: random(0, min(cap, base * 2^attempt)). */
export function backoffDelay(attempt, { base = 500, cap = 30000, random = Math.random } = {}) {
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/**
 * `http(s)://host[:port][/prefix]` -> `ws(s)://host[:port][/prefix]`.
 * With no `server`, the page's own origin is used.
 */
export function websocketBase(server) {
  const base = new URL(server || globalThis.location?.origin || "http://127.0.0.1");
  const scheme = base.protocol === "https:" || base.protocol === "wss:" ? "wss:" : "ws:";
  const path = base.pathname.replace(/\/+$/, "");
  return `${scheme}//${base.host}${path}`;
}

/** `http(s)` base URL of a server (for the JSON API). */
export function httpBase(server) {
  const base = new URL(server || globalThis.location?.origin || "http://127.0.0.1");
  const scheme = base.protocol === "wss:" ? "https:" : base.protocol === "ws:" ? "http:" : base.protocol;
  return `${scheme}//${base.host}${base.pathname.replace(/\/+$/, "")}`;
}

/** Public facts about a personal link: `{slug, host_name, host_online}`. */
export async function fetchLink(slug, { server, signal } = {}) {
  const url = `${httpBase(server)}/api/links/${encodeURIComponent(slug)}`;
  const response = await fetch(url, { signal, headers: { Accept: "application/json" } });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    throw new FoyerError(body?.code || `http_${response.status}`, body?.message || response.statusText);
  }
  return body;
}

/** Only ever navigate to http(s) URLs the server handed out. */
export function safeUrl(raw) {
  try {
    const url = new URL(raw, globalThis.location?.href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/**
 * Read link options (and a scheduled-session token) from a query string.
 * Values stay strings: the server parses and sanitises them, and reports the
 * ones it dropped in `waiting.ignored`.
 */
export function optionsFromQuery(search = globalThis.location?.search || "") {
  const params = new URLSearchParams(search);
  const options = {};
  for (const name of LINK_OPTIONS) {
    const value = params.get(name);
    if (value !== null && value !== "") options[name] = value;
  }
  const session = params.get("s") || params.get("session") || undefined;  // the API links use ?s=
  return { options, session };
}

/**
 * The socket core shared by hosts and guests: connect, reconnect with
 * backoff, keepalive, frame (de)coding. Subclasses implement `_opening()`
 * (the first frame), `_frame(frame)` and `_closed(event)` (which returns
 * whether to reconnect).
 *
 * Events: `state` (connecting | open | reconnecting | closed), `open`,
 * `close` ({code, reason, willReconnect, delay}), `frame` (every frame in),
 * `error` (FoyerError for `error` frames without a pending request).
 */
class Connection extends Emitter {
  constructor(options = {}) {
    super();
    this.server = options.server;
    this.pingInterval = options.pingInterval ?? 25000;
    this.pongTimeout = options.pongTimeout ?? 10000;
    this.backoff = { base: options.backoffBase ?? 500, cap: options.backoffCap ?? 30000 };
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.ws = null;
    this.state = "idle";
    this.attempt = 0;
    this._stopped = false;
    this._retryTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._onOnline = () => {
      if (this.state === "reconnecting") this._reconnectNow();
    };
    globalThis.addEventListener?.("online", this._onOnline);
  }

  /** Open the connection (again). Resolves once the socket is open. */
  connect() {
    this._stopped = false;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    return this._open();
  }

  /** Close for good: no reconnect. */
  close(code = 1000, reason = "") {
    this._stopped = true;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._stopKeepalive();
    globalThis.removeEventListener?.("online", this._onOnline);
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= 1) ws.close(code, reason);
    this._setState("closed");
  }

  /** Drop the socket as a network failure would (tests and debugging). */
  drop() {
    if (this.ws && this.ws.readyState <= 1) this.ws.close(4000, "dropped by client");
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== 1) {
      throw new FoyerError("not_connected", "not connected");
    }
    this.ws.send(JSON.stringify(frame));
  }

  get connected() {
    return this.state === "open";
  }

  _url() {
    throw new Error("subclass must implement _url()");
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", state);
  }

  _open() {
    return new Promise((resolve) => {
      this._setState(this.attempt === 0 ? "connecting" : "reconnecting");
      let ws;
      try {
        ws = new this.WebSocket(this._url(), [SUBPROTOCOL]);
      } catch (err) {
        this._scheduleReconnect({ code: 1006, reason: String(err) });
        resolve(false);
        return;
      }
      this.ws = ws;
      ws.addEventListener("open", async () => {
        if (this.ws !== ws) return;
        try {
          const first = await this._opening();
          if (this.ws !== ws || ws.readyState !== 1) return;
          ws.send(JSON.stringify(first));
        } catch (err) {
          this.emit("error", err instanceof FoyerError ? err : new FoyerError("internal", String(err)));
          this.close();
          resolve(false);
          return;
        }
        this._setState("open");
        this._startKeepalive();
        this.emit("open");
        resolve(true);
      });
      ws.addEventListener("message", (event) => {
        if (this.ws !== ws) return;
        this._alive();
        let frame;
        try {
          frame = JSON.parse(typeof event.data === "string" ? event.data : "");
        } catch {
          return;
        }
        if (!frame || typeof frame.type !== "string") return;
        this.emit("frame", frame);
        if (frame.type === "pong") return;
        this._frame(frame);
      });
      ws.addEventListener("close", (event) => {
        if (this.ws !== ws) return;
        this.ws = null;
        this._stopKeepalive();
        resolve(false);
        this._scheduleReconnect(event);
      });
    });
  }

  _scheduleReconnect(event) {
    const code = event.code ?? 1006;
    const again = !this._stopped && this._closed(event);
    let delay = null;
    if (again) {
      // 1012: the server is draining (a restart or deploy), not failing: come
      // back at once, jittered so its clients do not all arrive together; a
      // guest resumes its place on whichever process takes it.
      if (code === CloseCode.SERVICE_RESTART) this.attempt = 0;
      delay = backoffDelay(this.attempt, this.backoff);
      if (code === CloseCode.RATE_LIMITED) delay = Math.max(delay, this.backoff.cap / 2);
      this.attempt += 1;
      this._setState("reconnecting");
      this._retryTimer = setTimeout(() => {
        this._retryTimer = null;
        if (!this._stopped) this._open();
      }, delay);
    } else {
      this._stopped = true;
      globalThis.removeEventListener?.("online", this._onOnline);
      this._setState("closed");
    }
    this.emit("close", { code, reason: event.reason || "", willReconnect: again, delay });
  }

  _reconnectNow() {
    if (this._stopped || !this._retryTimer) return;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._open();
  }

  // Keepalive: a ping every `pingInterval`; no frame at all within
  // `pongTimeout` after it means the path is dead, so drop and reconnect.
  _startKeepalive() {
    this._stopKeepalive();
    if (!this.pingInterval) return;
    this._pingTimer = setInterval(() => {
      if (!this.ws || this.ws.readyState !== 1) return;
      try {
        this.send({ type: "ping" });
      } catch {
        return;
      }
      if (!this._pongTimer) {
        this._pongTimer = setTimeout(() => this.drop(), this.pongTimeout);
      }
    }, this.pingInterval);
  }

  _alive() {
    clearTimeout(this._pongTimer);
    this._pongTimer = null;
  }

  _stopKeepalive() {
    clearInterval(this._pingTimer);
    clearTimeout(this._pongTimer);
    this._pingTimer = null;
    this._pongTimer = null;
  }
}

/**
 * A host device: `hello` with a JWT, then the live waiting room.
 *
 * Options: `server` (default: this page's origin), `token` (a JWT) or
 * `getToken` (async, called before every connect, and with
 * `{expired: true}` after a 4001 close so it can fetch a fresh token),
 * `requestTimeout` (ms), plus the connection options.
 *
 * Events: everything from the connection, plus `welcome` (frame),
 * `join_request` (frame), `guest_left` (frame), `resolved` (frame),
 * `guest_away` / `guest_back` (frame: a guest's connection dropped / it resumed),
 * `guest_held` (frame: a device put the guest on hold; its card gets `held`),
 * `raid` (frame: {count, window_s, until, autolock}; `raidActive()` is true
 * until `until`: stay quiet per knock meanwhile), `presence` ({state, meeting}), `settings` ({policy}), `change`
 * (the waiting list, oldest first), `unauthorized` (the token was refused
 * and no refresh helped).
 */
export class HostClient extends Connection {
  constructor(options = {}) {
    super(options);
    this.token = options.token ?? null;
    this.getToken = options.getToken ?? null;
    this.requestTimeout = options.requestTimeout ?? 10000;
    this.host = null;
    this.presence = { state: "available", meeting: null };
    this.policy = null;
    this.settings = null;
    this.waiting = new Map();
    this.raid = null;
    this._pending = new Map();
    this._nextRef = 1;
    this._expired = false;
    this._refreshed = false;
    this._refreshTimer = null;
    // Ask getToken for a fresh token this long before the current one expires.
    this.refreshBefore = options.refreshBefore ?? 60000;
  }

  _url() {
    return `${websocketBase(this.server)}/ws/host`;
  }

  /** When the token expires (ms since the epoch), or null if it does not say. */
  static tokenExpiry(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
      return typeof claims.exp === "number" ? claims.exp * 1000 : null;
    } catch {
      return null;
    }
  }

  /**
   * Swap in a new token without reconnecting (server frame `refresh`); the
   * connection then outlives the old token.
   */
  async refresh(token) {
    await this.request({ type: "refresh", token });
    this.token = token;
    this._scheduleRefresh();
  }

  _scheduleRefresh() {
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    const expires = this.token && HostClient.tokenExpiry(this.token);
    if (!this.getToken || !expires) return;
    const wait = Math.max(1000, expires - Date.now() - this.refreshBefore);
    this._refreshTimer = setTimeout(async () => {
      try {
        const fresh = await this.getToken({ expired: false, refresh: true });
        if (fresh && fresh !== this.token) await this.refresh(fresh);
      } catch (err) {
        this.emit("error", err);  // the expiry then closes with 4001 and getToken runs again
      }
    }, wait);
  }

  async _opening() {
    if (this.getToken) {
      const fresh = await this.getToken({ expired: this._expired });
      if (fresh) this.token = fresh;
    }
    this._expired = false;
    if (!this.token) throw new FoyerError("unauthorized", "no host token");
    return { type: "hello", token: this.token };
  }

  _closed(event) {
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    this._failPending(new FoyerError("disconnected", "connection closed"));
    if (event.code === CloseCode.UNAUTHORIZED) {
      // Try once with a refreshed token; a second refusal in a row is final.
      if (this.getToken && !this._refreshed) {
        this._refreshed = true;
        this._expired = true;
        return true;
      }
      this.emit("unauthorized", { code: event.code, reason: event.reason || "" });
      return false;
    }
    return event.code !== CloseCode.POLICY;
  }

  _frame(frame) {
    switch (frame.type) {
      case "welcome": {
        this.attempt = 0;
        this._refreshed = false;
        this.host = frame.host;
        this._scheduleRefresh();
        this._applyPresence(frame.state, frame.meeting);
        if (frame.policy) this.policy = frame.policy;
        if (frame.settings) this.settings = frame.settings;
        this.waiting = new Map((frame.waiting || []).map((guest) => [guest.id, guest]));
        this.waitingTotal = frame.waiting_total ?? this.waiting.size;
        this.emit("welcome", frame);
        if (this.waitingTotal > this.waiting.size) this._pageRest(frame.waiting);
        if (frame.policy) this.emit("settings", { policy: frame.policy });
        this._changed();
        break;
      }
      case "join_request": {
        const guest = { ...frame.guest, position: frame.position };
        const isNew = !this.waiting.has(guest.id);
        this.waiting.set(guest.id, guest);
        this.emit("join_request", frame, isNew);
        this._changed();
        break;
      }
      case "guest_away":
      case "guest_back": {
        // Additions: the guest's connection dropped (it keeps its place) / it is back.
        const guest = this.waiting.get(frame.guest);
        if (guest) {
          guest.away = frame.type === "guest_away";
          this._changed();
        }
        this.emit(frame.type, frame);
        break;
      }
      case "guest_held": {
        // Addition: the guest keeps its place, with the host's line and estimate.
        const guest = this.waiting.get(frame.guest);
        if (guest) {
          guest.held = frame.held;
          this._changed();
        }
        this.emit("guest_held", frame);
        break;
      }
      case "raid": {
        // Addition: one collapsed notice for a burst of knocks.
        this.raid = frame;
        this.emit("raid", frame);
        break;
      }
      case "guest_left":
      case "resolved": {
        const removed = this.waiting.delete(frame.guest);
        this.emit(frame.type, frame);
        if (removed) this._changed();
        break;
      }
      case "presence": {
        this._applyPresence(frame.state, frame.meeting);
        break;
      }
      case "settings": {
        // `{settings: {policy, ...}}` (docs/protocol.md); a bare `policy` is accepted too.
        const policy = frame.settings?.policy ?? frame.policy;
        if (frame.settings) this.settings = frame.settings;
        if (policy) this.policy = { ...(this.policy || {}), ...policy };
        this.emit("settings", { policy: this.policy, settings: this.settings });
        break;
      }
      case "ack":
      case "lobby_page": {
        this._settle(frame.ref, null, frame);
        break;
      }
      case "error": {
        const err = new FoyerError(frame.code, frame.message, frame);
        if (frame.ref !== undefined && this._pending.has(String(frame.ref))) {
          this._settle(frame.ref, err, null);
        } else {
          this.emit("error", err);
        }
        break;
      }
      default:
        this.emit(frame.type, frame);
    }
  }

  _applyPresence(state, meeting) {
    if (!state) return;
    const next = { state, meeting: state === "in_meeting" ? meeting ?? this.presence.meeting : null };
    this.presence = next;
    this.emit("presence", next);
  }

  _changed() {
    this.emit("change", this.list());
  }

  /** A big lobby's welcome lists the oldest guests only: fetch the rest, page by page. */
  async _pageRest(first) {
    let after = first.length ? first[first.length - 1].id : undefined;
    for (let pages = 0; pages < 10000; pages++) {
      let page;
      try {
        page = await this.request(after ? { type: "page", after } : { type: "page" });
      } catch {
        return; // disconnected: the next welcome starts over
      }
      for (const guest of page.guests) if (!this.waiting.has(guest.id)) this.waiting.set(guest.id, guest);
      this._changed();
      if (!page.more || !page.guests.length) return;
      after = page.guests[page.guests.length - 1].id;
    }
  }

  /** The waiting guests, oldest first. */
  list() {
    return [...this.waiting.values()].sort((a, b) => (a.knocked_at ?? 0) - (b.knocked_at ?? 0));
  }

  /** Send a frame with a `ref`; resolves with the `ack`, rejects with the `error`. */
  request(frame) {
    const ref = `r${this._nextRef++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(ref);
        reject(new FoyerError("timeout", `no answer to ${frame.type}`));
      }, this.requestTimeout);
      this._pending.set(ref, { resolve, reject, timer });
      try {
        this.send({ ...frame, ref });
      } catch (err) {
        clearTimeout(timer);
        this._pending.delete(ref);
        reject(err);
      }
    });
  }

  _settle(ref, err, value) {
    const key = String(ref);
    const pending = this._pending.get(key);
    if (!pending) return;
    this._pending.delete(key);
    clearTimeout(pending.timer);
    if (err) pending.reject(err);
    else pending.resolve(value);
  }

  _failPending(err) {
    for (const [ref, pending] of this._pending) {
      clearTimeout(pending.timer);
      pending.reject(err);
      this._pending.delete(ref);
    }
  }

  admit(guest) {
    return this.request({ type: "admit", guest });
  }

  merge(guest) {
    return this.request({ type: "merge", guest });
  }

  newMeeting(guest, title) {
    return this.request(title ? { type: "new_meeting", guest, title } : { type: "new_meeting", guest });
  }

  busy(guest, message) {
    return this.request(message ? { type: "busy", guest, message } : { type: "busy", guest });
  }

  deny(guest, message) {
    return this.request(message ? { type: "deny", guest, message } : { type: "deny", guest });
  }

  message(guest, text) {
    return this.request({ type: "message", guest, text });
  }

  /**
   * Keep the guest in its place with a line and an estimate in seconds
   * (addition `hold`); the guest sees it, every device gets `guest_held`.
   */
  hold(guest, message, estimateS) {
    const frame = { type: "hold", guest };
    if (message) frame.message = message;
    if (Number.isInteger(estimateS) && estimateS > 0) frame.estimate_s = estimateS;
    return this.request(frame);
  }

  /** Deny every waiting guest with one line, atomically (addition `deny_all`). */
  denyAll(message) {
    return this.request(message ? { type: "deny_all", message } : { type: "deny_all" });
  }

  /**
   * Queue-control settings (addition, `settings.lobby`): `{max_wait_s,
   * max_wait_message, raid_threshold, raid_autolock, deny_cooldown_s}`, any part.
   */
  async setLobby(lobby) {
    const result = await this.request({ type: "settings", settings: { lobby } });
    this.settings = { ...(this.settings || {}), lobby: { ...(this.settings?.lobby || {}), ...lobby } };
    return result;
  }

  /** True while the last `raid` notice lasts: alert once, not per knock. */
  raidActive(now = Date.now()) {
    return Boolean(this.raid && now < this.raid.until);
  }

  /**
   * Admit every waiting guest, oldest first. Uses the server's `admit_all`;
   * a server without it (`bad_message`) gets one `admit` per guest.
   */
  async admitAll() {
    try {
      return await this.request({ type: "admit_all" });
    } catch (err) {
      if (!(err instanceof FoyerError) || err.code !== "bad_message") throw err;
    }
    const results = [];
    for (const guest of this.list()) {
      try {
        results.push(await this.admit(guest.id));
      } catch (err) {
        if (!(err instanceof FoyerError) || err.code !== "already_resolved") throw err;
      }
    }
    return results;
  }

  /** `state`: available | in_meeting | away; `meeting`: {id, url?, title?}. */
  async setPresence(state, meeting) {
    const frame = { type: "presence", state };
    if (state === "in_meeting" && meeting) frame.meeting = meeting;
    const result = await this.request(frame);
    this._applyPresence(state, meeting);
    return result;
  }

  /** Lobby policy `{locked?, bypass?}` (needs a server with `settings`). */
  async setPolicy(policy) {
    const result = await this.request({ type: "settings", settings: { policy } });
    this.policy = { ...(this.policy || {}), ...policy };
    this.emit("settings", { policy: this.policy });
    return result;
  }
}

/**
 * A guest visiting a personal link: `knock`, then wait for the outcome.
 *
 * Options: `server`, `slug`, `name`, `email`, `token` (a guest JWT, makes
 * the guest verified), `options` (link options), `session`, plus the
 * connection options.
 *
 * Events: everything from the connection, plus `waiting` (the frame, with
 * `host_online` and `host_notified`; also after a resume), `position` ({position}), `message` ({text}),
 * `host_status` ({online, state}: the host came online, went offline or changed
 * its state since; `hostOnline` and `hostState` follow it),
 * `admitted` ({mode, meeting}), `busy` ({message}), `denied` ({message}),
 * `held` ({message, estimate_s, until}: on hold, keeping its place; `held`
 * holds it until the wait ends), `timed_out` ({message}: the host's maximum
 * wait passed),
 * `requeued` (the old place expired while away; knocked again),
 * `outcome` ({type, ...}) for every final answer including the errors
 * `locked`, `unknown_link`, `unauthorized`, `rate_limited`.
 */
export class GuestClient extends Connection {
  constructor(options = {}) {
    super(options);
    this.slug = options.slug;
    this.name = options.name;
    this.email = options.email || undefined;
    this.token = options.token || undefined;
    this.options = options.options || {};
    this.session = options.session || undefined;
    this.guest = null;
    this.position = null;
    this.hostOnline = null;
    this.hostState = null; // "available", "in_meeting" or "away", once a host_status said
    this.hostNotified = null;
    this.resumeSecret = null;
    this.outcome = null;
    this.held = null;
    this._lastError = null;
    if (!this.slug) throw new FoyerError("bad_message", "slug is required");
  }

  _url() {
    return `${websocketBase(this.server)}/ws/guest/${encodeURIComponent(this.slug)}`;
  }

  async _opening() {
    this._lastError = null;
    if (this.resumeSecret) return { type: "resume", resume: this.resumeSecret };
    if (!this.name || !String(this.name).trim()) throw new FoyerError("bad_message", "name is required");
    const frame = { type: "knock", name: String(this.name).trim() };
    if (this.email) frame.email = this.email;
    if (this.token) frame.token = this.token;
    if (this.options && Object.keys(this.options).length) frame.options = this.options;
    if (this.session) frame.session = this.session;
    return frame;
  }

  _frame(frame) {
    switch (frame.type) {
      case "waiting": {
        this.attempt = 0;
        const resumed = Boolean(this.guest) && this.guest === frame.guest;
        this.guest = frame.guest;
        this.resumeSecret = frame.resume;
        this.position = frame.position;
        this.hostOnline = frame.host_online;
        this.hostNotified = frame.host_notified; // false: nobody was emailed about this wait
        this.held = null; // a held guest that resumes gets `held` again right after
        this.emit("waiting", { ...frame, resumed });
        break;
      }
      case "position":
        this.position = frame.position;
        this.emit("position", { position: frame.position });
        break;
      case "host_status":
        this.hostOnline = frame.online;
        this.hostState = frame.state;
        this.emit("host_status", { online: frame.online, state: frame.state });
        break;
      case "message":
        this.emit("message", { text: frame.text });
        break;
      case "held":
        this.held = frame;
        this.emit("held", frame);
        break;
      case "admitted":
      case "busy":
      case "denied":
      case "timed_out":
        this._finish(frame);
        break;
      case "error":
        this._lastError = frame;
        this.emit("error", new FoyerError(frame.code, frame.message, frame));
        break;
      default:
        this.emit(frame.type, frame);
    }
  }

  _finish(frame) {
    this.outcome = frame;
    this.resumeSecret = null;
    this._stopped = true;
    this.emit(frame.type, frame);
    this.emit("outcome", frame);
  }

  _closed(event) {
    if (this.outcome) return false;
    const code = event.code;
    const errorCode = this._lastError?.code;
    const final = {
      [CloseCode.LOCKED]: "locked",
      [CloseCode.UNKNOWN_LINK]: "unknown_link",
      [CloseCode.UNAUTHORIZED]: "unauthorized",
    }[code];
    if (final || errorCode === "locked" || errorCode === "unknown_link") {
      this._finish({ type: "error", code: final || errorCode, message: this._lastError?.message || "" });
      return false;
    }
    if (this.resumeSecret && (errorCode === "unknown_guest" || code === CloseCode.POLICY)) {
      // The place is gone (expired while away): knock again from the back.
      this.resumeSecret = null;
      this.guest = null;
      this.emit("requeued", { reason: errorCode || "policy" });
      return true;
    }
    if (code === CloseCode.POLICY || code === CloseCode.TOO_LARGE) {
      this._finish({ type: "error", code: errorCode || "bad_message", message: this._lastError?.message || "" });
      return false;
    }
    if (code === CloseCode.RATE_LIMITED) this.emit("rate_limited", {});
    return true;
  }

  /** Stop waiting: the host gets `guest_left` `cancelled`. */
  cancel() {
    try {
      if (this.connected) this.send({ type: "cancel" });
    } finally {
      this.resumeSecret = null;
      this.outcome = { type: "cancelled" };
      // Let the frame leave before the close handshake.
      setTimeout(() => this.close(1000, "cancelled"), 50);
      this._stopped = true;
      this.emit("outcome", this.outcome);
    }
  }
}
