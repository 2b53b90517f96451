// The console's "Your link" panel: the personal link at hand. Copy, share by
// email, its QR code, a link builder for the link options, a custom slug
// checked rule by rule as it is typed (keep or retire the old link), Meet now,
// and the email setting. All of it over the HTTP API with the host's own
// token (docs/browser.md); console.js starts it once the socket says welcome.
import { callApi } from "./console-api.js";
import { t } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const CHECK_DELAY_MS = 150;

let panel = null; // {host, token(), client, say, record}
let wired = false;
let checkTimer = 0;
let checkSeq = 0;

// For the browser tests.
window.foyerLink = {
  get record() {
    return panel?.record || null;
  },
};

const api = (method, path, body) => callApi(panel.token(), method, path, body);

const hostPath = (suffix = "") => `/api/hosts/${encodeURIComponent(panel.host)}${suffix}`;

async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard permission: the old way, through a selected field.
    const field = document.createElement("textarea");
    field.value = text;
    field.setAttribute("readonly", "");
    field.style.position = "fixed";
    field.style.opacity = "0";
    document.body.append(field);
    field.select();
    let done = false;
    try {
      done = document.execCommand("copy");
    } catch {
      done = false;
    }
    field.remove();
    return done;
  }
}

// ---- the link, its QR code and the builder ----------------------------------

/** The title as the server keeps it (protocol.links.clean_title): without the
 * characters the page names in data-strip, spaces, and what Python does not
 * print (categories C and Z). */
function cleanTitle(raw) {
  const strip = new Set([...$("opt-title").dataset.strip, " "]);
  const kept = [...raw].filter((ch) => !strip.has(ch) && !/[\p{C}\p{Z}]/u.test(ch));
  return kept.slice(0, 200).join(""); // code points, as Python counts
}

/** Under the title: what guests will see, when the rule changed what was typed. */
function showTitleHint() {
  const typed = $("opt-title").value.trim();
  const kept = cleanTitle(typed);
  const hint = $("opt-title-hint");
  const chars = $("opt-title").dataset.strip.split("").join(" ");
  hint.hidden = kept === typed;
  hint.textContent = hint.hidden ? "" : t(kept ? "link.title_cleaned" : "link.title_emptied", { chars, title: kept });
}

/** The link options chosen in the builder, as a query string (empty: none). */
function builtQuery() {
  const query = new URLSearchParams();
  const title = cleanTitle($("opt-title").value.trim());
  const duration = $("opt-duration").value.trim();
  if (title) query.set("title", title);
  if (duration) query.set("duration", duration);
  if ($("opt-region").value) query.set("region", $("opt-region").value);
  if ($("opt-recording").value) query.set("recording", $("opt-recording").value);
  if ($("opt-announce").checked) query.set("announce", "true");
  if ($("opt-autodelete").checked) query.set("autodelete", "true");
  return query.toString();
}

function builtLink() {
  const query = builtQuery();
  return panel.record.link + (query ? `?${query}` : "");
}

function showLink() {
  const record = panel.record;
  showTitleHint();
  const query = builtQuery();
  const link = builtLink();
  $("my-link").href = record.link;
  $("my-link").textContent = record.link;
  $("built-link").value = link;
  $("built-link").textContent = link;
  const qr = `/l/${encodeURIComponent(record.slug)}/qr.svg${query ? `?${query}` : ""}`;
  if ($("qr").getAttribute("src") !== qr) $("qr").src = qr;
  $("qr").alt = t("link.qr_alt", { link });
  const subject = t("link.mail_subject", { host: record.name });
  const body = t("link.mail_body", { host: record.name, link });
  $("email-link").href =
    `mailto:?subject=${encodeURIComponent(subject)}&body=${encodeURIComponent(body)}`;
  $("slug-prefix").textContent = record.link.slice(0, record.link.length - record.slug.length);
}

function showRecord(record) {
  panel.record = record;
  const regions = $("opt-region");
  if (regions.options.length === 1) {
    for (const region of record.regions || []) regions.add(new Option(region, region));
  }
  showSettings(record.settings || {});
  $("email-setting").hidden = !record.email_enabled;
  $("link-panel").hidden = false;
  showLink();
  checkSlug();
}

function showSettings(settings) {
  $("email-mode").value = settings.email_mode || "away";
  $("email-language").value = settings.language || "en";
  $("instant-personal").checked = Boolean(settings.instant_personal_room);
  if (panel.record) panel.record.settings = settings;
}

// ---- custom slug --------------------------------------------------------------

function showRules(rules) {
  for (const item of $("slug-rules").children) {
    const found = rules?.find((rule) => rule.rule === item.dataset.rule);
    item.classList.toggle("ok", found?.ok === true);
    item.classList.toggle("bad", found?.ok === false);
    item.dataset.ok = found ? String(found.ok) : "";
  }
}

function checkSlug() {
  clearTimeout(checkTimer);
  const candidate = $("slug-input").value.trim();
  $("slug-save").disabled = true;
  if (!candidate) {
    showRules(null);
    return;
  }
  checkTimer = setTimeout(async () => {
    const seq = ++checkSeq;
    try {
      const answer = await api("GET", hostPath(`/slug-check?slug=${encodeURIComponent(candidate)}`));
      if (seq !== checkSeq) return; // an older answer: the field has moved on
      showRules(answer.rules);
      $("slug-save").disabled = !answer.ok || answer.slug === panel.record.slug;
    } catch (err) {
      panel.say(t("error.generic", { why: err.message }), true);
    }
  }, CHECK_DELAY_MS);
}

async function saveSlug(event) {
  event.preventDefault();
  const slug = $("slug-input").value.trim().toLowerCase();
  if (!slug || $("slug-save").disabled) return;
  if (slug === panel.record.slug) {
    panel.say(t("slug.same"));
    return;
  }
  const retire = $("slug-form").elements.old.value === "retire";
  $("slug-save").disabled = true;
  try {
    const record = await api("PUT", hostPath("/slug"), { slug, retire_old: retire });
    $("slug-input").value = "";
    showRecord(record);
    panel.say(t(retire ? "slug.changed_retired" : "slug.changed", { link: record.link }));
  } catch (err) {
    const known = { slug_taken: "slug.taken", invalid_slug: "slug.invalid" };
    panel.say(known[err.code] ? `${t(known[err.code])} (${err.message})` : t("error.generic", { why: err.message }), true);
    checkSlug();
  }
}

// ---- settings: email, instant meetings --------------------------------------------

async function patchSettings(patch, done) {
  try {
    showRecord(await api("PATCH", hostPath("/settings"), patch));
    panel.say(t(done));
  } catch (err) {
    panel.say(t("error.generic", { why: err.message }), true);
    showSettings(panel.record.settings || {});
  }
}

// ---- meet now -------------------------------------------------------------------

async function meetNow() {
  const button = $("meet-now");
  const title = $("meet-name").value.trim();
  // Opened now, inside the click (popup blockers), and pointed at the meeting after.
  const tab = window.open("", "_blank");
  button.disabled = true;
  try {
    const meeting = await api("POST", "/api/meetings", { host: panel.host, ...(title ? { title } : {}) });
    // The link to share (guests knock there) is copied; the host goes straight in.
    const share = meeting.join_link || meeting.url;
    const url = meeting.url || meeting.join_link;
    await copy(share);
    if (tab) {
      tab.opener = null;
      tab.location.href = url;
    }
    $("meet-now-box").dataset.url = url;
    $("meet-now-box").dataset.share = share;
    panel.say(t("meet.started", { url: share }));
  } catch (err) {
    tab?.close();
    panel.say(t("meet.failed", { why: err.message }), true);
  } finally {
    button.disabled = false;
  }
}

// ---- start / stop -------------------------------------------------------------------

function wire() {
  if (wired) return;
  wired = true;
  $("copy-link").addEventListener("click", async () => {
    const ok = await copy(panel.record.link);
    panel.say(t(ok ? "link.copied" : "link.copy_failed"), !ok);
  });
  $("copy-built").addEventListener("click", async () => {
    const ok = await copy(builtLink());
    panel.say(t(ok ? "link.copied" : "link.copy_failed"), !ok);
  });
  for (const id of ["opt-title", "opt-duration", "opt-region", "opt-recording", "opt-announce", "opt-autodelete"]) {
    $(id).addEventListener("input", showLink);
    $(id).addEventListener("change", showLink);
  }
  $("slug-input").addEventListener("input", checkSlug);
  $("slug-form").addEventListener("submit", saveSlug);
  $("email-mode").addEventListener("change", () =>
    patchSettings({ email_mode: $("email-mode").value }, "email.saved"),
  );
  $("email-language").addEventListener("change", () =>
    patchSettings({ language: $("email-language").value }, "email.saved"),
  );
  $("instant-personal").addEventListener("change", () =>
    patchSettings({ instant_personal_room: $("instant-personal").checked }, "meet.saved"),
  );
  $("meet-now").addEventListener("click", meetNow);
}

/** The console is signed in as `host` (each welcome): show the panel. */
export async function startLinkPanel({ host, token, client, say }) {
  const fresh = !panel || panel.client !== client;
  panel = { host, token, client, say, record: panel?.host === host ? panel.record : null };
  wire();
  if (fresh) client.on("settings", ({ settings }) => settings && panel?.client === client && showSettings(settings));
  try {
    showRecord(await api("GET", hostPath()));
  } catch (err) {
    say(t("error.generic", { why: err.message }), true);
  }
}

export function stopLinkPanel() {
  panel = null;
  $("link-panel").hidden = true;
}
