// <foyer-knock>: an embeddable knock button for a Foyer personal link.
//
//   <script type="module" src="https://foyer.example.com/static/foyer-widget.js"></script>
//   <foyer-knock link="ada-lovelace"></foyer-knock>
//
// Attributes:
//   link      the personal link's slug (required)
//   server    Foyer's base URL (default: where this script was loaded from)
//   options   link options as a query string, e.g. "title=Intro&duration=15"
//   target    where the meeting opens: "_top" (default, this page) or "_blank"
//   label     the button text (default: "Knock for <host name>")
//   lang      the language (en, fr, de, es; default: the browser's, as
//             Accept-Language tells the server)
//
// Everything renders in a shadow root so the page's CSS cannot break it.
// DOM events (bubbling, composed): foyer-waiting, foyer-position,
// foyer-message, foyer-held (addition), foyer-outcome; and foyer-admitted, which is cancelable:
// call preventDefault() to handle the meeting URL yourself.
import { GuestClient, fetchLink, optionsFromQuery, safeUrl } from "./foyer.js";
import { fetchMessages, translator } from "./i18n.js";

const DEFAULT_SERVER = new URL(".", import.meta.url).href.replace(/\/static\/$/, "");

const STYLE = `
:host { all: initial; display: inline-block; max-width: 100%; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color: #1d1f23; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
/* The page's rules still reach the host element and what it inherits, so
   the box sets every inherited text property itself. */
.box { all: initial; display: block; box-sizing: border-box; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color: #1d1f23; text-align: left; letter-spacing: normal; word-spacing: normal; text-transform: none; text-indent: 0; white-space: normal; direction: ltr; visibility: visible; cursor: auto; }
.box { background: #fff; border: 1px solid #dcd8d0; border-radius: 10px; padding: 14px 16px; width: 20rem; max-width: 100%; }
.box.closed { border: 0; padding: 0; background: transparent; width: auto; }
h2 { font-size: 1.05rem; margin: 0 0 8px; }
p { margin: 0 0 8px; }
.muted { color: #5d6470; }
label { display: block; font-weight: 600; margin: 0 0 3px; }
input { font: inherit; width: 100%; padding: 8px 10px; border: 1px solid #aaa49a; border-radius: 8px; margin: 0 0 10px; color: inherit; background: #fff; }
button, a.button { font: inherit; font-weight: 600; display: inline-flex; align-items: center; justify-content: center; min-height: 40px; padding: 6px 14px; border-radius: 8px; border: 1px solid #aaa49a; background: #fff; color: #1d1f23; cursor: pointer; text-decoration: none; }
button.primary, a.button.primary { background: #2a5bd7; border-color: #2a5bd7; color: #fff; }
button:focus-visible, a.button:focus-visible, input:focus-visible { outline: none; box-shadow: 0 0 0 3px #f5b400; }
.row { display: flex; flex-wrap: wrap; gap: 8px; }
.place strong { font-size: 1.3rem; }
ul { list-style: none; margin: 8px 0; padding: 0; }
li { background: #eef3ff; border-radius: 8px; padding: 6px 10px; margin: 0 0 6px; }
.error { color: #b3261e; }
.box:not(.ready) { visibility: hidden; }
`;

const TEMPLATE = `
<div class="box closed" part="box">
  <button class="primary open" part="button" type="button"></button>
  <form class="form" hidden novalidate>
    <h2 class="title" tabindex="-1"></h2>
    <label for="name" data-t="guest.name"></label>
    <input id="name" name="name" autocomplete="name" required maxlength="100">
    <label for="email"><span data-t="guest.email"></span> <span class="muted" data-t="guest.optional"></span></label>
    <input id="email" name="email" type="email" autocomplete="email" maxlength="254">
    <p class="error name-error" role="alert" hidden data-t="guest.name_error"></p>
    <div class="row">
      <button class="primary knock" type="submit" data-t="widget.knock"></button>
      <button class="back" type="button" data-t="widget.cancel"></button>
    </div>
  </form>
  <section class="waiting" hidden>
    <h2 class="title" tabindex="-1"></h2>
    <p class="status" role="status" aria-live="polite"></p>
    <p class="place"><span data-t="guest.place"></span> <strong class="position">–</strong></p>
    <p class="conn muted" role="status" aria-live="polite"></p>
    <ul class="messages" aria-live="polite"></ul>
    <button class="cancel" type="button" data-t="widget.leave"></button>
  </section>
  <section class="outcome" hidden>
    <h2 class="title" tabindex="-1"></h2>
    <p class="text" role="status"></p>
    <p class="message muted" hidden></p>
    <div class="row">
      <a class="button primary join" hidden rel="noopener" data-t="guest.join"></a>
      <button class="again" type="button" hidden data-t="guest.again"></button>
    </div>
  </section>
</div>
`;

export class FoyerKnock extends HTMLElement {
  static observedAttributes = ["link", "server", "label", "lang"];

  constructor() {
    super();
    this.root = this.attachShadow({ mode: "open" });
    this.root.innerHTML = `<style>${STYLE}</style>${TEMPLATE}`;
    this.client = null;
    this.hostName = null;
    this.t = translator({});
    this.lang = null;
    this._q = (selector) => this.root.querySelector(selector);
    this._q(".open").addEventListener("click", () => this._view("form"));
    this._q(".back").addEventListener("click", () => this._view("closed"));
    this._q(".again").addEventListener("click", () => this._view("form"));
    this._q(".cancel").addEventListener("click", () => this.client?.cancel());
    this._q(".form").addEventListener("submit", (event) => {
      event.preventDefault();
      this._knock();
    });
  }

  get server() {
    return this.getAttribute("server") || DEFAULT_SERVER;
  }

  get link() {
    return this.getAttribute("link") || "";
  }

  connectedCallback() {
    this._loadMessages();
    this._loadHost();
    this._label();
  }

  async _loadMessages() {
    const wanted = this.getAttribute("lang") || "";
    try {
      const { lang, messages } = await fetchMessages(this.server, wanted);
      if (wanted !== (this.getAttribute("lang") || "")) return;
      this.t = translator(messages);
      this.lang = lang;
    } catch {
      // The server is unreachable: the knock will say so; show what we have.
    }
    this._texts();
  }

  /** Every static string, from the catalogue. */
  _texts() {
    for (const node of this.root.querySelectorAll("[data-t]")) node.textContent = this.t(node.dataset.t);
    this._q(".box").setAttribute("lang", this.lang || "");
    this._q(".box").classList.add("ready");
    this._label();
    if (this.refused) {
      this._q(".outcome .title").textContent = this.t("widget.not_here_heading");
      this._q(".outcome .text").textContent = this.t("widget.not_here");
    }
  }

  disconnectedCallback() {
    if (this.client && !this.client.outcome) this.client.cancel();
    this.client = null;
  }

  attributeChangedCallback(name, oldValue, newValue) {
    if (oldValue === newValue || !this.isConnected) return;
    if (name === "link" || name === "server") this._loadHost();
    if (name === "lang" || name === "server") this._loadMessages();
    this._label();
  }

  async _loadHost() {
    const link = this.link;
    if (!link) return;
    try {
      const info = await fetchLink(link, { server: this.server });
      if (link !== this.link) return;
      this.hostName = info.host_name || null;
      if (info.embed_allowed === false) this._notHere();
    } catch (err) {
      // Cross-origin reads may be refused; the knock itself still works.
      if (err?.code === "unknown_link") this.hostName = null;
    }
    this._label();
  }

  /** This page's origin may not open the guest socket (FOYER_ALLOWED_ORIGINS):
   * say so once, instead of "reconnecting…" forever, and knock no more. */
  _notHere() {
    this.refused = true;
    if (this.client) {
      const client = this.client;
      this.client = null;
      client.close();
    }
    this.dataset.outcome = "origin_refused";
    this._q(".outcome .title").textContent = this.t("widget.not_here_heading");
    this._q(".outcome .text").textContent = this.t("widget.not_here");
    this._q(".outcome .message").hidden = true;
    this._q(".join").hidden = true;
    this._q(".again").hidden = true;
    this._view("outcome", false);
  }

  /** The socket drops before any answer: perhaps this origin is refused. */
  async _checkOrigin() {
    try {
      const info = await fetchLink(this.link, { server: this.server });
      if (info.embed_allowed === false) this._notHere();
    } catch {
      // The server is unreachable: keep reconnecting.
    }
  }

  _label() {
    const t = this.t;
    const title = this.hostName ? t("guest.knock_for", { host: this.hostName }) : t("widget.knock");
    this._q(".open").textContent = this.getAttribute("label") || title;
    this._q(".form .title").textContent = title;
  }

  _view(name, focus = true) {
    this._q(".box").classList.toggle("closed", name === "closed");
    this._q(".open").hidden = name !== "closed";
    for (const view of ["form", "waiting", "outcome"]) this._q(`.${view}`).hidden = view !== name;
    this.dataset.state = name;
    if (!focus) return;
    if (name === "form") this._q("#name").focus();
    else if (name === "closed") this._q(".open").focus();
    else this._q(`.${name} .title`).focus();
  }

  _fire(type, detail, cancelable = false) {
    return this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true, cancelable }));
  }

  _knock() {
    const name = this._q("#name").value.trim();
    const email = this._q("#email").value.trim() || undefined;
    if (!name) {
      this._q(".name-error").hidden = false;
      this._q("#name").focus();
      return;
    }
    this._q(".name-error").hidden = true;
    if (this.refused) {
      this._notHere();
      return;
    }
    const t = this.t;
    const who = this.hostName || t("widget.the_host");
    const { options, session } = optionsFromQuery(this.getAttribute("options") || "");
    this.client?.close();
    this._q(".messages").replaceChildren();
    this._q(".position").textContent = "–";
    this._q(".status").textContent = t("guest.knocking");
    this._q(".conn").textContent = "";
    this._q(".waiting .title").textContent = this.hostName
      ? t("guest.waiting_for", { host: this.hostName })
      : t("widget.waiting");
    this._view("waiting");

    const client = new GuestClient({ server: this.server, slug: this.link, name, email, options, session });
    this.client = client;
    let answered = false;
    client.on("waiting", (frame) => {
      answered = true;
      this.dataset.guest = frame.guest;
      const offline =
        frame.host_notified === false ? "guest.waiting_offline_unnotified" : "guest.waiting_offline";
      this._q(".status").textContent = frame.host_online
        ? t("widget.knows", { host: who })
        : t(offline, { host: who });
      this._q(".position").textContent = String(frame.position);
      this._q(".conn").textContent = frame.resumed ? t("guest.resumed") : "";
      this._fire("foyer-waiting", { guest: frame.guest, position: frame.position });
    });
    client.on("host_status", ({ online, state }) => {
      const offline =
        client.hostNotified === false ? "guest.waiting_offline_unnotified" : "guest.waiting_offline";
      this._q(".status").textContent = !online
        ? t(offline, { host: who })
        : state === "available"
          ? t("widget.knows", { host: who })
          : t(`guest.waiting_${state}`, { host: who });
    });
    client.on("position", ({ position }) => {
      this._q(".position").textContent = String(position);
      this._fire("foyer-position", { position });
    });
    client.on("message", ({ text }) => {
      const item = document.createElement("li");
      item.textContent = `${who}: ${text}`; // the host's own words
      this._q(".messages").append(item);
      this._fire("foyer-message", { text });
    });
    client.on("held", (frame) => {
      // On hold (addition): the guest keeps its place; the line says why.
      this._q(".conn").textContent = frame.message
        ? t("held.with_line", { host: who, message: frame.message })
        : t("held.plain", { host: who });
      this._fire("foyer-held", frame);
    });
    client.on("state", (state) => {
      if (state !== "reconnecting") return;
      this._q(".conn").textContent = t("guest.reconnecting");
      // Never answered: a refused origin looks like a dropped handshake; ask why.
      if (!answered && client === this.client) this._checkOrigin();
    });
    client.on("outcome", (frame) => this._outcome(frame, who));
    client.connect();
  }

  _navigate(url) {
    try {
      window.top.location.assign(url);
    } catch {
      // A cross-origin frame may not steer its top window.
      window.location.assign(url);
    }
  }

  _outcome(frame, who) {
    this._fire("foyer-outcome", frame);
    const t = this.t;
    const show = (title, text, { message, url, again = false } = {}) => {
      this.dataset.outcome = frame.type === "error" ? frame.code : frame.type;
      this._q(".outcome .title").textContent = title;
      this._q(".outcome .text").textContent = text;
      const quote = this._q(".outcome .message");
      quote.hidden = !message;
      quote.textContent = message ? t("quote.text", { text: message }) : "";
      const join = this._q(".join");
      join.hidden = !url;
      if (url) {
        join.href = url;
        join.target = this.getAttribute("target") === "_blank" ? "_blank" : "_top";
      }
      this._q(".again").hidden = !again;
      this._view("outcome");
    };
    switch (frame.type) {
      case "admitted": {
        const url = safeUrl(frame.meeting?.url);
        show(t("guest.admitted_heading"), url ? t("widget.going") : t("guest.admitted", { host: who }), { url });
        if (url && this._fire("foyer-admitted", frame, true)) {
          if (this.getAttribute("target") === "_blank") window.open(url, "_blank", "noopener");
          else setTimeout(() => this._navigate(url), 300);
        }
        break;
      }
      case "busy":
        show(t("guest.busy_heading"), t("guest.busy", { host: who }), { message: frame.message, again: true });
        break;
      case "denied":
        show(t("guest.denied_heading"), t("guest.denied", { host: who }), { message: frame.message });
        break;
      case "timed_out":
        show(t("timed_out.heading"), t("timed_out.text", { host: who }), { message: frame.message, again: true });
        break;
      case "cancelled":
        show(t("guest.cancelled_heading"), t("guest.cancelled"), { again: true });
        break;
      default:
        if (frame.code === "locked") show(t("guest.locked_heading"), t("widget.locked"), { again: true });
        else if (frame.code === "unknown_link") show(t("guest.unknown_heading"), t("widget.unknown"));
        else show(t("guest.error_heading"), t("widget.error"), { message: frame.message, again: true });
    }
  }
}

if (!customElements.get("foyer-knock")) customElements.define("foyer-knock", FoyerKnock);
