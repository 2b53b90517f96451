// The console's "Calendars" panel: the CalDAV calendars Foyer keeps in step
// (docs/meetings.md, Calendar sync). Connect one (checked at once by the
// server), see each one's sync state, sync now, disconnect. Over the HTTP API
// with the host's own token; console.js starts it once the socket says welcome.
import { callApi } from "./console-api.js";
import { t } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 5000;
const NAME_RE = /^[a-z0-9][a-z0-9-]{0,39}$/;

let panel = null; // {host, token(), say}
let wired = false;
let timer = 0;

const api = (method, path, body) => callApi(panel.token(), method, path, body);

const calendarsPath = (suffix = "") =>
  `/api/hosts/${encodeURIComponent(panel.host)}/calendars${suffix}`;

function when(ms) {
  return new Date(ms).toLocaleTimeString(document.documentElement.lang || undefined, {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

function stateLine(state) {
  if (state.error) {
    return t("cal.state_error", { failures: state.failures, message: state.error_message || state.error });
  }
  if (!state.last_ok) return t("cal.state_pending");
  return t("cal.state_ok", {
    when: when(state.last_ok),
    seen: state.events_seen,
    rewritten: state.events_rewritten,
  });
}

function render(calendars) {
  const list = $("calendar-list");
  list.replaceChildren(
    ...calendars.map((calendar) => {
      const li = document.createElement("li");
      li.className = "calendar" + (calendar.state.error ? " failing" : "");
      li.dataset.name = calendar.name;
      const title = document.createElement("strong");
      title.textContent = calendar.name;
      const where = document.createElement("span");
      where.className = "muted calendar-url";
      where.textContent = calendar.url;
      const state = document.createElement("p");
      state.className = "calendar-state";
      state.textContent = stateLine(calendar.state);
      const sync = document.createElement("button");
      sync.type = "button";
      sync.className = "small";
      sync.dataset.action = "sync";
      sync.textContent = t("cal.sync_now");
      const drop = document.createElement("button");
      drop.type = "button";
      drop.className = "small";
      drop.dataset.action = "disconnect";
      drop.textContent = t("cal.disconnect");
      const actions = document.createElement("p");
      actions.className = "row";
      actions.append(sync, drop);
      li.append(title, " ", where, state, actions);
      return li;
    }),
  );
  $("calendar-none").hidden = calendars.length > 0;
}

async function refresh() {
  if (!panel) return;
  try {
    const found = await api("GET", calendarsPath());
    render(found.calendars);
  } catch (err) {
    panel.say(err.message, true);
  }
}

function explain(err) {
  const known = {
    calendar_refused: "cal.refused",
    not_a_calendar: "cal.not_calendar",
    calendar_unreachable: "cal.unreachable",
  };
  return known[err.code] ? t(known[err.code]) : err.message;
}

async function connect(event) {
  event.preventDefault();
  const status = $("cal-status");
  const name = $("cal-name").value.trim();
  if (!NAME_RE.test(name)) {
    status.textContent = t("cal.bad_name");
    return;
  }
  $("cal-connect").disabled = true;
  status.textContent = t("cal.connecting");
  try {
    await api("PUT", calendarsPath(`/${encodeURIComponent(name)}`), {
      url: $("cal-url").value.trim(),
      username: $("cal-user").value.trim(),
      password: $("cal-pass").value,
    });
    $("cal-pass").value = ""; // the page keeps no password
    status.textContent = t("cal.connected");
    await refresh();
  } catch (err) {
    status.textContent = explain(err);
  } finally {
    $("cal-connect").disabled = false;
  }
}

async function act(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const name = button.closest("li").dataset.name;
  const path = calendarsPath(`/${encodeURIComponent(name)}`);
  try {
    if (button.dataset.action === "sync") {
      await api("POST", `${path}/sync`);
    } else {
      await api("DELETE", path);
      panel.say(t("cal.disconnected"));
    }
    await refresh();
  } catch (err) {
    panel.say(explain(err), true);
  }
}

export function startCalendarsPanel(options) {
  panel = options;
  if (!wired) {
    $("calendar-form").addEventListener("submit", connect);
    $("calendar-list").addEventListener("click", act);
    wired = true;
  }
  $("calendars-panel").hidden = false;
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
  refresh();
}

export function stopCalendarsPanel() {
  clearInterval(timer);
  timer = 0;
  panel = null;
  $("calendars-panel").hidden = true;
  $("calendar-list").replaceChildren();
}
