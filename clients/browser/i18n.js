// The visitor's language in the browser: the catalogue the server chose
// (embedded in the page as <script type="application/json" id="foyer-i18n">,
// or fetched from GET /api/i18n by the widget on another site) and `t()`.
// Every user-visible string goes through a catalogue (server/web/i18n.py).

const PLACEHOLDER = /\{([a-z_]+)\}/g;

/** A `t(key, values)` over `messages`: a missing key shows as itself. */
export function translator(messages) {
  return (key, values = {}) => {
    const text = Object.prototype.hasOwnProperty.call(messages, key) ? messages[key] : key;
    return text.replace(PLACEHOLDER, (whole, name) =>
      Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : whole,
    );
  };
}

/** The catalogue embedded in this page (empty when there is none). */
export function pageMessages(doc = document) {
  try {
    return JSON.parse(doc.getElementById("foyer-i18n")?.textContent || "{}");
  } catch {
    return {};
  }
}

/** The catalogue from a Foyer server: `lang` if given, else the browser's
 * Accept-Language decides (the server picks, so both sides agree). */
export async function fetchMessages(server, lang) {
  const url = new URL("/api/i18n", server);
  if (lang) url.searchParams.set("lang", lang);
  const response = await fetch(url, { credentials: "omit" });
  if (!response.ok) throw new Error(`http_${response.status}`);
  const body = await response.json();
  return { lang: body.lang, messages: body.messages || {} };
}

export const t = translator(pageMessages());
