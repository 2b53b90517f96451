"""The Lua scripts, with the lifecycle's rules rendered in.

Every ``__NAME__`` placeholder in a script is replaced at load time by the
Lua literal ``protocol.lobby.lua_constants()`` or ``protocol.events`` gives
for it, so the scripts and Python share one definition of every state,
event, verdict, reason and doorbell kind. A member of one of the constant
namespaces (``E.MERGE``, ``V.OK``, ``K.Knocked``, ``H.KNOCKED``) is rendered as
its string: a script that declared those tables built them again on every
call (issue 11: 3 µs a call on a busy Valkey, 11 on an idle one).
"""

from __future__ import annotations

import json
import re
from importlib import resources

from protocol import events, lobby
from server.storage import keys

NAMES = (
    "knock",
    "transition",
    "snapshot",
    "say",
    "presence",
    "cas",
    "create_host",
    "due",
    "done",
    "hit",
    "page",
    "defer",
    "claim",
    "swap",
    "cal_lease",
    "cal_commit",
)
_PLACEHOLDER = re.compile(r"__[A-Z_]+__")
_MEMBER = re.compile(r"\b([EVKH])\.([A-Za-z_]+)\b")


def members() -> dict[str, dict[str, str]]:
    """The constant namespaces the scripts name members of, by letter."""
    return {
        "E": {e.name: e.value for e in lobby.LobbyEvent},
        "V": {v.name: v.value for v in lobby.Verdict},
        "K": events.lua_kinds(),
        "H": events.lua_hooks(),
    }


def constants() -> dict[str, str]:
    kinds = events.lua_kinds()
    body = ",".join(f'["{name}"]="{kind}"' for name, kind in kinds.items())
    hooks = ",".join(f'{name}="{value}"' for name, value in events.lua_hooks().items())
    return {
        **lobby.lua_constants(),
        "__KIND__": "{" + body + "}",
        "__HOOK__": "{" + hooks + "}",
        "__OUTBOX_MAX__": str(keys.OUTBOX_MAX),
        "__KNOCK_LISTENER__": f'"{keys.KNOCK_LISTENER}"',
    }


def render(source: str, values: dict[str, str]) -> str:
    """``source`` with every placeholder replaced; an unknown one is an error."""

    def one(match: re.Match[str]) -> str:
        name = match.group(0)
        if name not in values:
            raise KeyError(f"no value for {name} in a Lua script")
        return values[name]

    namespaces = members()

    def member(match: re.Match[str]) -> str:
        found = namespaces[match.group(1)].get(match.group(2))
        if found is None:
            raise KeyError(f"no constant {match.group(0)} in a Lua script")
        return json.dumps(found)  # a JSON string is a Lua string literal here

    return _MEMBER.sub(member, _PLACEHOLDER.sub(one, source))


def load() -> dict[str, str]:
    """Script name -> rendered source. Files named ``_*.lua`` are shared chunks,
    rendered into the scripts where their placeholder stands."""
    folder = resources.files("server.storage").joinpath("lua")
    values = constants()
    values["__WRITE_POLICY__"] = render(folder.joinpath("_policy.lua").read_text(), values)
    return {name: render(folder.joinpath(f"{name}.lua").read_text(), values) for name in NAMES}
