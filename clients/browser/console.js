// The host console at /host: sign in with a host token, answer knocks.
import { FoyerError, HostClient } from "./foyer.js";
import { t } from "./i18n.js";
import { startLinkPanel, stopLinkPanel } from "./console-link.js";
import { startCalendarsPanel, stopCalendarsPanel } from "./console-calendars.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "foyer.host.token";
const MUTE_KEY = "foyer.console.muted";
const ALERT_EVERY_MS = 4000; // at most one sound + notification per this interval

let client = null;
const cards = new Map(); // guest id -> <li>
// count: knock alerts made; quieted: knocks kept quiet by a raid notice; raids: raid alerts.
const alerts = { count: 0, last: 0, muted: false, every: ALERT_EVERY_MS, quieted: 0, raids: 0 };
let audio = null;

// Exposed for debugging and for the browser tests.
window.foyer = {
  get client() {
    return client;
  },
  alerts,
};

// ---- token ---------------------------------------------------------------

function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const token = params.get("token");
  if (token) {
    try {
      sessionStorage.setItem(TOKEN_KEY, token);
    } catch {
      // No storage: the token still works for this page load.
    }
    // Keep the token out of history and of anything that copies the URL.
    history.replaceState(null, "", location.pathname + location.search);
  }
  return token;
}

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function forgetToken() {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Nothing stored.
  }
}

/** The JWT's claims, for display only (the server verifies it). */
function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return {};
  }
}

// ---- feedback ------------------------------------------------------------

function say(text, bad = false) {
  const line = $("status");
  line.textContent = text;
  line.classList.toggle("bad", bad);
}

function setConn(state) {
  const badge = $("conn");
  const tones = { connecting: "warn", open: "ok", reconnecting: "warn", closed: "bad", idle: "off" };
  const tone = tones[state] || "off";
  const text = tones[state] ? t(`console.conn_${state}`) : state;
  badge.textContent = text;
  badge.className = `badge ${tone}`;
}

function describe(err) {
  if (!(err instanceof FoyerError)) return String(err);
  switch (err.code) {
    case "already_resolved":
    case "unknown_guest":
    case "not_in_meeting":
    case "not_connected":
      return t(`console.${err.code}`);
    case "disconnected":
      return t("console.not_connected");
    default:
      return err.message || err.code;
  }
}

// ---- sound and notifications ----------------------------------------------

function beep() {
  try {
    audio = audio || new AudioContext();
    if (audio.state === "suspended") audio.resume();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = "sine";
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.0001, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.2, audio.currentTime + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.3);
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.32);
  } catch {
    // No audio device or no autoplay permission: the title still counts.
  }
}

function alertKnock(guest) {
  if (client?.raidActive()) {
    alerts.quieted += 1; // one collapsed raid notice instead of a ping per knock
    return;
  }
  if (alerts.muted) return;
  const now = Date.now();
  if (now - alerts.last < alerts.every) return;
  alerts.last = now;
  alerts.count += 1;
  beep();
  if ("Notification" in window && Notification.permission === "granted") {
    try {
      const title = guest.options?.title ? ` — ${guest.options.title}` : "";
      const note = new Notification(t("console.is_waiting", { name: guest.label || guest.name }), {
        body: t("console.someone_knocked", { title }),
        tag: "foyer-knock",
      });
      note.onclick = () => {
        window.focus();
        note.close();
      };
    } catch {
      // Some platforms only allow notifications from a service worker.
    }
  }
}

function setMuted(muted) {
  alerts.muted = muted;
  const button = $("mute");
  button.setAttribute("aria-pressed", String(muted));
  button.textContent = t(muted ? "console.sound_off" : "console.sound_on");
  try {
    localStorage.setItem(MUTE_KEY, muted ? "1" : "0");
  } catch {
    // Preference not kept; fine.
  }
}

function updateNotifyButton() {
  const button = $("notify");
  if (!("Notification" in window)) {
    button.hidden = true;
    return;
  }
  button.hidden = Notification.permission === "granted";
  button.disabled = Notification.permission === "denied";
  if (Notification.permission === "denied") button.textContent = t("console.notifications_blocked");
}

// ---- the waiting list ------------------------------------------------------

function waitedFor(knockedAt) {
  const seconds = Math.max(0, Math.floor((Date.now() - (knockedAt || Date.now())) / 1000));
  if (seconds < 60) return t("console.waited_s", { s: seconds });
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return t("console.waited_m", { m: minutes, s: seconds % 60 });
  return t("console.waited_h", { h: Math.floor(minutes / 60), m: minutes % 60 });
}

const OPTION_LABELS = {
  title: (v) => t("quote.text", { text: v }),
  duration: (v) => t("console.opt_duration", { v }),
  region: (v) => t("console.opt_region", { v }),
  relationship: (v) => t("console.opt_relationship", { v: String(v).slice(0, 8) }),
  announce: (v) => t(v ? "console.opt_announce" : "console.opt_no_announce"),
  autodelete: (v) => t(v ? "console.opt_autodelete" : "console.opt_keep"),
  recording: (v) => t("console.opt_recording", { v }),
  when: (v) => t("console.opt_when", { v }), // a dedicated meeting's time (its join link, /m/{id})
  meeting: () => t("console.opt_meeting"),
};

function optionChips(options) {
  const chips = [];
  for (const [name, value] of Object.entries(options || {})) {
    if (value === null || value === undefined || value === "") continue;
    const label = OPTION_LABELS[name] ? OPTION_LABELS[name](value) : `${name}: ${value}`;
    const li = document.createElement("li");
    li.textContent = label;
    chips.push(li);
  }
  return chips;
}

// Hold (issue 14): keep the guest in its place with the line and an estimate.
const ESTIMATES = [
  ["", "hold.no_estimate"],
  ["300", "hold.about_5"],
  ["600", "hold.about_10"],
  ["900", "hold.about_15"],
  ["1800", "hold.about_30"],
];

function addHoldControls(li) {
  const hold = document.createElement("button");
  hold.type = "button";
  hold.className = "small";
  hold.dataset.action = "hold";
  hold.textContent = t("hold.button");
  hold.title = t("hold.button_title");
  const estimate = document.createElement("select");
  estimate.className = "estimate";
  estimate.setAttribute("aria-label", t("hold.estimate_label"));
  for (const [value, key] of ESTIMATES) estimate.add(new Option(t(key), value));
  li.querySelector('[data-action="deny"]').before(hold, estimate);
  li.querySelector(".extra input").placeholder = t("hold.line_placeholder");
}

function timeLeft(until, now = Date.now()) {
  const seconds = Math.ceil((until - now) / 1000);
  if (seconds <= 0) return t("hold.estimate_passed");
  const m = Math.floor(seconds / 60);
  const s = String(seconds % 60).padStart(2, "0");
  return t("hold.time_left", { time: `${m}:${s}` });
}

function heldText(held) {
  let text = t("hold.on_hold");
  if (held.message) text += `: ${t("quote.text", { text: held.message })}`;
  if (held.until) text += ` · ${timeLeft(held.until)}`;
  return text;
}

function makeCard(guest) {
  const li = $("guest-template").content.firstElementChild.cloneNode(true);
  li.dataset.guest = guest.id;
  addHoldControls(li);
  const input = li.querySelector(".extra input");
  const inputId = `msg-${guest.id}`.replace(/[^A-Za-z0-9_-]/g, "_");
  input.id = inputId;
  li.querySelector(".extra label").htmlFor = inputId;
  for (const button of li.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", () => act(guest.id, button.dataset.action, li));
  }
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      act(guest.id, "message", li);
    }
  });
  return li;
}

function fillCard(li, guest, index) {
  li.querySelector(".label").textContent = guest.label || guest.name;
  li.querySelector(".email").textContent = guest.email || "";
  li.querySelector(".since").dataset.knockedAt = String(guest.knocked_at || Date.now());
  li.querySelector(".since").textContent = waitedFor(guest.knocked_at);
  li.querySelector(".pos").textContent = `#${index + 1}`;
  li.classList.toggle("away", Boolean(guest.away));
  let note = li.querySelector(".away-note");
  if (guest.away && !note) {
    note = document.createElement("span");
    note.className = "away-note";
    note.textContent = t("console.away_note");
    li.querySelector(".since").after(note);
  } else if (!guest.away && note) {
    note.remove();
  }
  li.classList.toggle("held", Boolean(guest.held));
  let heldNote = li.querySelector(".held-note");
  if (guest.held) {
    if (!heldNote) {
      heldNote = document.createElement("span");
      heldNote.className = "held-note";
      li.querySelector(".who").append(heldNote);
    }
    heldNote.dataset.until = String(guest.held.until || "");
    heldNote.dataset.message = guest.held.message || "";
    heldNote.textContent = heldText(guest.held);
  } else if (heldNote) {
    heldNote.remove();
  }
  li.querySelector(".opts").replaceChildren(...optionChips(guest.options));
  li.setAttribute("aria-label", t("console.card_label", { name: guest.label || guest.name, n: index + 1 }));
  const inMeeting = client?.presence.state === "in_meeting";
  const merge = li.querySelector('[data-action="merge"]');
  merge.disabled = !inMeeting || li.dataset.busy === "1";
  merge.title = t(inMeeting ? "console.merge_title" : "console.merge_disabled");
}

// A big lobby is a virtual list: every guest is reachable by scrolling, but only
// the cards near the viewport exist in the page (a window of rows; the rest is
// padding of the estimated height), so 10,000 waiting guests cost a few dozen
// cards. Renders are coalesced to one per frame; scrolling renders too.
const OVERSCAN = 8; // rows above and below the viewport kept in the page
let rowHeight = 140; // px per card and gap; measured after each render
let renderQueued = false;

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

function visibleRange(total) {
  // Row 0 starts at the list's top edge: the padding above stands for rows 0..start-1.
  const top = $("queue").getBoundingClientRect().top;
  const first = Math.floor(Math.max(0, -top) / rowHeight);
  const rows = Math.ceil(window.innerHeight / rowHeight);
  const start = Math.max(0, Math.min(total, first - OVERSCAN));
  return [start, Math.min(total, first + rows + OVERSCAN)];
}

function render() {
  const list = client ? client.list() : [];
  const queue = $("queue");
  const seen = new Set();
  const [start, end] = visibleRange(list.length);
  list.slice(start, end).forEach((guest, offset) => {
    const index = start + offset;
    seen.add(guest.id);
    let li = cards.get(guest.id);
    if (!li) {
      li = makeCard(guest);
      cards.set(guest.id, li);
    }
    fillCard(li, guest, index);
    li.setAttribute("aria-setsize", String(list.length));
    li.setAttribute("aria-posinset", String(index + 1));
    if (queue.children[offset] !== li) queue.insertBefore(li, queue.children[offset] || null);
  });
  for (const [id, li] of cards) {
    if (!seen.has(id)) {
      const hadFocus = li.contains(document.activeElement);
      li.remove();
      cards.delete(id);
      if (hadFocus) $("queue-title").focus();
    }
  }
  const shown = queue.children.length;
  if (shown > 1) {
    const firstCard = queue.children[0];
    const lastCard = queue.children[shown - 1];
    const span = lastCard.offsetTop + lastCard.offsetHeight - firstCard.offsetTop;
    const gap = parseFloat(getComputedStyle(queue).rowGap) || 0;
    rowHeight = Math.max(40, (span + gap) / shown);
  }
  queue.style.paddingTop = `${start * rowHeight}px`;
  queue.style.paddingBottom = `${(list.length - end) * rowHeight}px`;
  $("count").textContent = String(list.length);
  $("empty").hidden = list.length > 0;
  $("admit-all").disabled = list.length === 0;
  $("deny-all").disabled = list.length === 0;
  document.title = list.length ? `(${list.length}) ${t("console.title")}` : t("console.title");
}

window.addEventListener("scroll", scheduleRender, { passive: true });
window.addEventListener("resize", scheduleRender);

function tick() {
  for (const since of document.querySelectorAll(".guest-card .since")) {
    since.textContent = waitedFor(Number(since.dataset.knockedAt));
  }
  for (const note of document.querySelectorAll(".guest-card .held-note")) {
    const until = Number(note.dataset.until) || 0;
    note.textContent = heldText({ message: note.dataset.message, until });
  }
  if (!$("raid").hidden && !client?.raidActive()) $("raid").hidden = true;
}

async function act(guestId, action, li) {
  if (!client) return;
  const input = li.querySelector(".extra input");
  const text = input.value.trim();
  const buttons = li.querySelectorAll("button[data-action]");
  if (action === "message" && !text) {
    say(t("console.type_first"), true);
    input.focus();
    return;
  }
  li.dataset.busy = "1";
  for (const button of buttons) button.disabled = true;
  try {
    switch (action) {
      case "admit":
        await client.admit(guestId);
        break;
      case "merge":
        await client.merge(guestId);
        break;
      case "new_meeting":
        await client.newMeeting(guestId, text || undefined);
        break;
      case "busy":
        await client.busy(guestId, text || undefined);
        break;
      case "deny":
        await client.deny(guestId, text || undefined);
        break;
      case "hold":
        await client.hold(guestId, text || undefined, Number(li.querySelector(".estimate").value) || undefined);
        input.value = "";
        say(t("hold.said"));
        break;
      case "message":
        await client.message(guestId, text);
        input.value = "";
        say(t("console.line_sent"));
        break;
      default:
        break;
    }
  } catch (err) {
    say(describe(err), true);
  } finally {
    delete li.dataset.busy;
    if (li.isConnected) {
      for (const button of buttons) button.disabled = false;
      const guest = client.waiting.get(guestId);
      if (guest) fillCard(li, guest, client.list().indexOf(guest));
    }
  }
}

// ---- presence and policy ---------------------------------------------------

function showPresence(presence) {
  const form = $("presence-form");
  for (const radio of form.elements.state) radio.checked = radio.value === presence.state;
  $("meeting-fields").hidden = presence.state !== "in_meeting";
  $("presence-set").hidden = presence.state !== "in_meeting";
  if (presence.state === "in_meeting" && presence.meeting) {
    $("meeting-id").value = presence.meeting.id || "";
    $("meeting-url").value = presence.meeting.url || "";
    $("meeting-title").value = presence.meeting.title || "";
  }
  const known = ["available", "in_meeting", "away"].includes(presence.state);
  const meeting = presence.meeting?.title || presence.meeting?.id;
  $("presence-now").textContent =
    t("console.now", { state: known ? t(`console.${presence.state}`) : presence.state }) +
    (presence.state === "in_meeting" && meeting ? ` (${meeting})` : "");
  render();
}

function showPolicy(policy) {
  if (!policy) return;
  $("policy-form").hidden = false;
  $("locked").checked = Boolean(policy.locked);
  $("raid-lock").hidden = Boolean(policy.locked);
  $("raid-locked").hidden = !policy.locked;
  if (policy.bypass) $("bypass").value = policy.bypass;
}

// Available and Away apply at once, as the lobby settings do; In a meeting first
// asks which meeting (merge needs it), then Set status sends it.
$("presence-form").addEventListener("change", (event) => {
  if (event.target.name !== "state") return;
  const inMeeting = event.target.value === "in_meeting";
  $("meeting-fields").hidden = !inMeeting;
  $("presence-set").hidden = !inMeeting; // the others need no button
  if (inMeeting) $("meeting-id").focus();
  else $("presence-form").requestSubmit();
});

$("presence-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!client) return;
  const state = $("presence-form").elements.state.value;
  let meeting;
  if (state === "in_meeting") {
    const id = $("meeting-id").value.trim();
    if (!id) {
      say(t("console.need_meeting_id"), true);
      $("meeting-id").focus();
      return;
    }
    meeting = { id };
    const url = $("meeting-url").value.trim();
    const title = $("meeting-title").value.trim();
    if (url) meeting.url = url;
    if (title) meeting.title = title;
  }
  try {
    await client.setPresence(state, meeting);
    say(t("console.status_updated"));
  } catch (err) {
    say(describe(err), true);
  }
});

async function sendPolicy() {
  if (!client) return;
  const policy = { locked: $("locked").checked, bypass: $("bypass").value };
  try {
    await client.setPolicy(policy);
    say(t(policy.locked ? "console.room_locked" : "console.lobby_saved"));
  } catch (err) {
    if (err instanceof FoyerError && err.code === "bad_message") {
      say(t("console.no_settings"), true);
    } else {
      say(describe(err), true);
    }
    showPolicy(client.policy);
  }
}
$("locked").addEventListener("change", sendPolicy);
$("bypass").addEventListener("change", sendPolicy);

$("admit-all").addEventListener("click", async () => {
  if (!client) return;
  $("admit-all").disabled = true;
  try {
    await client.admitAll();
    say(t("console.all_admitted"));
  } catch (err) {
    say(describe(err), true);
  } finally {
    render();
  }
});

// ---- deny all and raids (issue 14) -------------------------------------------

function addLobbyControls() {
  const line = document.createElement("input");
  line.id = "bulk-line";
  line.type = "text";
  line.maxLength = 500;
  line.placeholder = t("deny_all.line_placeholder");
  line.setAttribute("aria-label", t("deny_all.line_label"));
  const denyAll = document.createElement("button");
  denyAll.id = "deny-all";
  denyAll.type = "button";
  denyAll.className = "small danger";
  denyAll.textContent = t("deny_all.button");
  denyAll.disabled = true;
  $("admit-all").after(line, denyAll);

  const raid = document.createElement("div");
  raid.id = "raid";
  raid.className = "raid-notice";
  raid.setAttribute("role", "alert");
  raid.hidden = true;
  const text = document.createElement("p");
  text.id = "raid-text";
  const lock = document.createElement("button");
  lock.id = "raid-lock";
  lock.type = "button";
  lock.className = "small danger";
  lock.textContent = t("raid.lock");
  const locked = document.createElement("span");
  locked.id = "raid-locked";
  locked.className = "muted";
  locked.textContent = t("raid.locked");
  locked.hidden = true;
  const auto = document.createElement("label");
  auto.className = "check";
  const autoBox = document.createElement("input");
  autoBox.id = "raid-autolock";
  autoBox.type = "checkbox";
  auto.append(autoBox, ` ${t("raid.autolock")}`);
  raid.append(text, lock, locked, auto);
  document.querySelector(".queue-head").after(raid);

  autoBox.addEventListener("change", async () => {
    if (!client) return;
    try {
      await client.setLobby({ raid_autolock: autoBox.checked });
      say(t(autoBox.checked ? "raid.autolock_on" : "raid.autolock_off"));
    } catch (err) {
      autoBox.checked = !autoBox.checked;
      say(describe(err), true);
    }
  });

  denyAll.addEventListener("click", async () => {
    if (!client) return;
    const count = client.list().length;
    if (!window.confirm(t("deny_all.confirm", { count }))) return;
    denyAll.disabled = true;
    try {
      await client.denyAll(line.value.trim() || undefined);
      line.value = "";
      say(t("deny_all.done"));
    } catch (err) {
      say(describe(err), true);
    } finally {
      render();
    }
  });
  lock.addEventListener("click", async () => {
    if (!client) return;
    try {
      await client.setPolicy({ locked: true });
      say(t("raid.locked_said"));
    } catch (err) {
      say(describe(err), true);
    }
    showPolicy(client.policy);
  });
}

function showRaid(frame, wasActive) {
  const raid = $("raid");
  const auto = frame.autolock ? ` ${t("raid.locking")}` : "";
  $("raid-text").textContent = t("raid.text", { count: frame.count }) + auto;
  $("raid-autolock").checked = Boolean(frame.autolock || client?.settings?.lobby?.raid_autolock);
  raid.hidden = false;
  showPolicy(client?.policy);
  if (wasActive || alerts.muted) return; // one alert per raid, however many knocks
  alerts.raids += 1;
  beep();
  if ("Notification" in window && Notification.permission === "granted") {
    try {
      new Notification(t("raid.text", { count: frame.count }), {
        body: t("raid.notification"),
        tag: "foyer-raid",
      });
    } catch {
      // Some platforms only allow notifications from a service worker.
    }
  }
}

addLobbyControls();

// ---- sign in / out ---------------------------------------------------------

function showSignin(message) {
  $("signin").hidden = false;
  $("console").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  setConn("idle");
  if (message) say(message, true);
  $("token").focus();
}

function connect(token) {
  client?.close();
  cards.clear();
  $("queue").replaceChildren();
  $("raid").hidden = true;
  $("signin").hidden = true;
  $("console").hidden = false;
  $("signout").hidden = false;
  const sub = claims(token).sub;
  $("who").textContent = sub ? t("console.as", { who: sub }) : "";

  client = new HostClient({
    // Read the token on every (re)connect: another sign-in replaces it.
    getToken: () => storedToken() || token,
  });
  client.on("state", setConn);
  client.on("welcome", (frame) => {
    $("who").textContent = t("console.as", { who: frame.name || frame.host });
    say("");
    showPolicy(frame.policy);
    startLinkPanel({ host: frame.host, token: () => storedToken() || token, client, say });
    startCalendarsPanel({ host: frame.host, token: () => storedToken() || token, say });
  });
  client.on("presence", showPresence);
  client.on("settings", ({ policy }) => showPolicy(policy));
  client.on("change", scheduleRender);
  let raidWasActive = false;
  client.on("frame", (frame) => {
    if (frame.type === "raid") raidWasActive = client.raidActive();
  });
  client.on("raid", (frame) => showRaid(frame, raidWasActive));
  client.on("join_request", (frame, isNew) => {
    if (isNew) alertKnock(frame.guest);
  });
  client.on("guest_left", (frame) => {
    const why = {
      cancelled: "console.guest_left",
      disconnected: "console.guest_lost",
      expired: "console.guest_expired",
      timed_out: "console.guest_timed_out",
    };
    say(t(why[frame.reason] || "console.guest_left"));
  });
  client.on("error", (err) => say(describe(err), true));
  client.on("unauthorized", () => {
    client = null;
    forgetToken();
    stopLinkPanel();
    stopCalendarsPanel();
    showSignin(t("console.refused"));
  });
  client.connect();
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch {
    // Token only lives in memory.
  }
  $("token").value = "";
  connect(token);
});

$("signout").addEventListener("click", () => {
  client?.close();
  client = null;
  forgetToken();
  cards.clear();
  $("queue").replaceChildren();
  document.title = t("console.title");
  stopLinkPanel();
  stopCalendarsPanel();
  showSignin();
  say(t("console.signed_out"));
});

$("mute").addEventListener("click", () => setMuted(!alerts.muted));
$("notify").addEventListener("click", async () => {
  try {
    await Notification.requestPermission();
  } finally {
    updateNotifyButton();
  }
});

// The first user gesture unlocks audio (autoplay rules).
document.addEventListener(
  "pointerdown",
  () => {
    try {
      audio = audio || new AudioContext();
      audio.resume();
    } catch {
      // No audio.
    }
  },
  { once: true },
);

try {
  setMuted(localStorage.getItem(MUTE_KEY) === "1");
} catch {
  setMuted(false);
}
updateNotifyButton();
setInterval(tick, 1000);

// Pasting a new console URL (#token=...) into an open tab signs in again.
window.addEventListener("hashchange", () => {
  const fresh = takeTokenFromFragment();
  if (fresh) connect(fresh);
});

const token = takeTokenFromFragment() || storedToken();
if (token) connect(token);
else showSignin();
