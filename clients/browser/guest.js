// The guest page at /l/{slug}: knock form, waiting state, outcome.
import { GuestClient, fetchLink, optionsFromQuery, safeUrl } from "./foyer.js";
import { t } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const app = $("app");
const slug = app.dataset.slug;
const { options, session } = optionsFromQuery(location.search);
let hostName = app.dataset.hostName || slug; // rendered by the server
let client = null;

// Exposed for debugging and for the browser tests (drop / inspect).
window.foyer = { get client() { return client; } };

function show(view, heading) {
  for (const section of document.querySelectorAll(".view")) {
    section.hidden = section.dataset.view !== view;
  }
  app.setAttribute("aria-busy", "false");
  app.dataset.state = view;
  if (heading) {
    $("heading").textContent = heading;
    document.title = `${heading} · Foyer`;
  }
}

function focusHeading() {
  $("heading").focus({ preventScroll: false });
}

function setHost(link) {
  hostName = link.host_name || slug;
  $("host-name").textContent = hostName;
  showHostBadge(link.host_online, link.host_state || "available");
}

/** The badge beside the host's name: offline, online, or (online) its state. */
function showHostBadge(online, state) {
  const badge = $("host-status");
  badge.hidden = false;
  const key = !online ? "guest.offline" : state === "available" ? "guest.online" : `guest.${state}`;
  badge.textContent = t(key);
  badge.className = `badge ${!online ? "off" : state === "available" ? "ok" : "warn"}`;
  app.dataset.hostOnline = String(Boolean(online));
}

function outcome(kind, text, { message, url, retry = false, heading } = {}) {
  show("outcome", heading || text);
  app.dataset.outcome = kind;
  $("outcome-text").textContent = text;
  const quote = $("outcome-message");
  quote.hidden = !message;
  quote.textContent = message ? t("quote.by", { text: message, host: hostName }) : "";
  const join = $("join");
  join.hidden = !url;
  if (url) join.href = url;
  $("retry").hidden = !retry;
  focusHeading();
}

function positionText(position) {
  if (position === 1) return t("guest.next", { n: 1 });
  return position == null ? "–" : String(position);
}

// `host_notified` (an addition) is false when nobody was told of the wait (the
// host has no email address, or email is off): then the page must not say so.
function waitingText(online, notified, state = "available") {
  if (online && state !== "available") return t(`guest.waiting_${state}`, { host: hostName });
  if (online) return t("guest.waiting_online", { host: hostName });
  const key = notified === false ? "guest.waiting_offline_unnotified" : "guest.waiting_offline";
  return t(key, { host: hostName });
}

function addMessage(text) {
  const item = document.createElement("li");
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = `${hostName}: `;
  item.append(who, document.createTextNode(text));
  $("messages").append(item);
}

// On hold (issue 14): the host's line and the estimate counting down, in the
// waiting view; the guest keeps its place.
let heldTimer = null;

function heldPanel() {
  let panel = $("held");
  if (!panel) {
    panel = document.createElement("div");
    panel.id = "held";
    panel.className = "notice held";
    panel.setAttribute("role", "status");
    panel.hidden = true;
    const line = document.createElement("p");
    line.id = "held-text";
    const countdown = document.createElement("p");
    countdown.id = "held-countdown";
    countdown.className = "countdown";
    panel.append(line, countdown);
    $("connection").after(panel);
  }
  return panel;
}

function countdownText(until) {
  const seconds = Math.ceil((until - Date.now()) / 1000);
  if (seconds <= 0) return t("held.any_moment");
  const m = Math.floor(seconds / 60);
  const s = String(seconds % 60).padStart(2, "0");
  return t("held.time_left", { time: `${m}:${s}` });
}

function showHeld(frame) {
  const panel = heldPanel();
  clearInterval(heldTimer);
  heldTimer = null;
  if (!frame) {
    panel.hidden = true;
    delete app.dataset.held;
    return;
  }
  panel.hidden = false;
  app.dataset.held = "1";
  $("waiting-text").textContent = t("held.seen", { host: hostName });
  $("held-text").textContent = frame.message
    ? t("held.with_line", { host: hostName, message: frame.message })
    : t("held.plain", { host: hostName });
  const countdown = $("held-countdown");
  countdown.hidden = !frame.until;
  if (frame.until) {
    const update = () => {
      countdown.textContent = countdownText(frame.until);
    };
    update();
    heldTimer = setInterval(update, 1000);
  }
}

function knock(name, email) {
  client?.close();
  $("messages").replaceChildren();
  $("ignored").hidden = true;
  $("position").textContent = "–";
  $("connection").textContent = t("guest.knocking");
  $("waiting-text").textContent = t("guest.knocking");
  show("waiting", t("guest.waiting_for", { host: hostName }));
  focusHeading();

  showHeld(null);
  client = new GuestClient({ slug, name, email, options, session });
  client.on("held", (frame) => showHeld(frame));
  client.on("waiting", (frame) => {
    $("waiting-text").textContent = waitingText(frame.host_online, frame.host_notified);
    $("position").textContent = positionText(frame.position);
    $("connection").textContent = frame.resumed
      ? t("guest.resumed")
      : requeued
        ? t("guest.requeued_done")
        : "";
    requeued = false;
    app.dataset.guest = frame.guest;
    if (Array.isArray(frame.ignored) && frame.ignored.length) {
      const note = $("ignored");
      note.hidden = false;
      note.textContent = t("guest.ignored", { names: frame.ignored.join(", ") });
    }
  });
  client.on("position", ({ position }) => {
    $("position").textContent = positionText(position);
  });
  // The host came online, left or changed state while the guest waits (addition).
  client.on("host_status", ({ online, state }) => {
    showHostBadge(online, state);
    $("waiting-text").textContent = waitingText(online, client.hostNotified, state);
  });
  client.on("message", ({ text }) => addMessage(text));
  let requeued = false;
  client.on("requeued", () => {
    requeued = true;
    $("connection").textContent = t("guest.requeued");
  });
  client.on("state", (state) => {
    if (state === "reconnecting") $("connection").textContent = t("guest.reconnecting");
  });
  client.on("rate_limited", () => {
    $("connection").textContent = t("guest.rate_limited");
  });
  client.on("outcome", (frame) => {
    showHeld(null);
    switch (frame.type) {
      case "admitted": {
        const url = safeUrl(frame.meeting?.url);
        outcome("admitted", t("guest.admitted", { host: hostName }), {
          heading: t("guest.admitted_heading"),
          url: url || undefined,
        });
        if (url) {
          $("outcome-text").textContent = t("guest.admitted_going", { host: hostName });
          setTimeout(() => location.assign(url), 300);
        }
        break;
      }
      case "busy":
        outcome("busy", t("guest.busy", { host: hostName }), {
          heading: t("guest.busy_heading"),
          message: frame.message,
          retry: true,
        });
        break;
      case "denied":
        outcome("denied", t("guest.denied", { host: hostName }), {
          heading: t("guest.denied_heading"),
          message: frame.message,
        });
        break;
      case "timed_out":
        outcome("timed_out", t("timed_out.text", { host: hostName }), {
          heading: t("timed_out.heading"),
          message: frame.message,
          retry: true,
        });
        break;
      case "cancelled":
        outcome("cancelled", t("guest.cancelled"), { heading: t("guest.cancelled_heading"), retry: true });
        break;
      case "error":
        if (frame.code === "locked") {
          outcome("locked", t("guest.locked", { host: hostName }), {
            heading: t("guest.locked_heading"),
            retry: true,
          });
        } else if (frame.code === "unknown_link") {
          unknownLink(frame.message === RETIRED);
        } else {
          outcome("error", t("guest.error"), {
            heading: t("guest.error_heading"),
            message: frame.message,
            retry: true,
          });
        }
        break;
      default:
        break;
    }
  });
  client.connect();
}

// The server's message for a retired link (RetiredLink; its wire code is unknown_link).
const RETIRED = "this link is no longer in use";

function unknownLink(retired = false) {
  const kind = retired ? "retired" : "unknown";
  outcome(`${kind}_link`, t(`guest.${kind}`), { heading: t(`guest.${kind}_heading`) });
  $("host-line").hidden = true;
}

$("knock-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  const email = $("email").value.trim() || undefined;
  const error = $("name-error");
  if (!name) {
    error.hidden = false;
    $("name").setAttribute("aria-invalid", "true");
    $("name").focus();
    return;
  }
  error.hidden = true;
  $("name").removeAttribute("aria-invalid");
  try {
    sessionStorage.setItem("foyer.guest", JSON.stringify({ name, email: email || "" }));
  } catch {
    // Storage may be unavailable (private mode); the form works without it.
  }
  knock(name, email);
});

$("cancel").addEventListener("click", () => client?.cancel());
$("retry").addEventListener("click", () => {
  show("form", t("guest.knock_for", { host: hostName }));
  $("name").focus();
});

async function start() {
  try {
    const saved = JSON.parse(sessionStorage.getItem("foyer.guest") || "null");
    if (saved) {
      $("name").value = saved.name || "";
      $("email").value = saved.email || "";
    }
  } catch {
    // Ignore unreadable storage.
  }
  // The title as the server keeps it (the page carries it), not as typed in the URL.
  const title = $("app").dataset.topic;
  if (title) {
    const topic = $("topic");
    topic.hidden = false;
    topic.textContent = t("guest.topic", { title });
  }
  try {
    setHost(await fetchLink(slug));
  } catch (err) {
    if (err.code === "unknown_link" || err.code === "http_404") {
      unknownLink();
      return;
    }
    if (err.code === "retired_link" || err.code === "http_410") {
      unknownLink(true);
      return;
    }
    // The API is unreachable: the knock itself will tell us more.
  }
  show("form", t("guest.knock_for", { host: hostName }));
  $("name").focus();
}

start();
