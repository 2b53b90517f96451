"""The browser client (``foyer.js``) in a real browser: what its callers rely on
without a page around it (issue 10, points 10 and 11)."""

from __future__ import annotations

import time
from typing import Any

import jwt
from playwright.sync_api import BrowserContext

from tests.support import FoyerProcess

SCRIPT = """async ([server, shortToken, freshToken]) => {
  const { HostClient } = await import('/static/foyer.js');
  const asked = [];
  let welcomes = 0;
  const client = new HostClient({
    server,
    token: shortToken,
    refreshBefore: 2000,
    getToken: async (why) => {
      asked.push(why);
      return why.refresh ? freshToken : shortToken;
    },
  });
  client.on('welcome', () => { welcomes += 1; });
  await client.connect();
  while (welcomes === 0) await new Promise((r) => setTimeout(r, 20));
  const expiry = HostClient.tokenExpiry(shortToken);
  // Past the first token's expiry: a connection still on it would be closed (4001).
  await new Promise((r) => setTimeout(r, expiry - Date.now() + 1500));
  const ack = await client.request({ type: 'presence', state: 'available' });
  const result = {
    refreshed: asked.some((why) => why.refresh),
    welcomes,
    state: client.state,
    onFresh: client.token === freshToken,
    answer: ack.type,
  };
  client.close();
  return result;
}"""


def _token(foyer: FoyerProcess, host: str, lives_s: float) -> str:
    exp = int(time.time() + lives_s)
    return jwt.encode({"sub": host, "exp": exp}, foyer.secret, algorithm="HS256")


def test_the_js_client_refreshes_its_token_without_reconnecting(
    foyer_web: FoyerProcess, context: BrowserContext
) -> None:
    host: dict[str, Any] = foyer_web.create_host("Refreshing Rita")
    page = context.new_page()
    page.goto(f"{foyer_web.http_url}/host")  # same origin as /static/foyer.js
    result = page.evaluate(
        SCRIPT,
        [foyer_web.http_url, _token(foyer_web, host["id"], 4), _token(foyer_web, host["id"], 3600)],
    )
    assert result == {
        "refreshed": True,
        "welcomes": 1,  # one connection all along: no reconnect
        "state": "open",
        "onFresh": True,
        "answer": "ack",  # and the server still answers it
    }
