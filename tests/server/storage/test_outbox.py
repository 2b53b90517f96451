"""The webhook outbox as the scripts write it: one entry per change, none for
a call the Batcher sent twice, none at all with webhooks off; the host is
marked due in ``foyer:outbox-hosts``."""

from __future__ import annotations

import uuid

from protocol.lobby import LobbyEvent
from server.storage import keys
from server.storage.outbox import Outbox
from server.storage.store import KnockVerdict, Store
from server.storage.values import pack
from tests.server.storage.conftest import Stores


async def _knock(store: Store, host: str, guest: str) -> None:
    result = await store.knock(
        host,
        guest,
        {"id": guest, "name": "G"},
        resume=f"{guest}~secret",
        conn="c1",
        email="",
        verified=False,
        link_limit=0,
        address="a",
        address_limit=0,
    )
    assert result.verdict is KnockVerdict.OK


async def test_each_change_is_one_outbox_entry_and_a_resent_call_adds_none(
    stores: Stores,
) -> None:
    store = Store(stores.store.batch, outbox=True)
    host = "ob-" + uuid.uuid4().hex[:10]
    await stores.hosts.create_host(host, "Ada", None)
    await _knock(store, host, "g1")
    await _knock(store, host, "g1")  # the same knock again (same resume secret)
    keys_, args = store.transition_command(host, LobbyEvent.BUSY, [("g1", pack({"type": "busy"}))])
    await store.batch.script("transition", keys_, args)
    await store.batch.script("transition", keys_, args)  # sent twice: applied once
    await store.set_presence(host, "away", None)

    entries = await Outbox(store.batch).entries(host)
    types = [e.fields["type"].decode() for e in entries]
    assert types == ["guest.knocked", "guest.resolved", "host.presence"]
    assert entries[1].fields["action"] == b"busy" and entries[1].fields["guest"] == b"g1"
    assert await stores.redis.zscore(keys.OUTBOX_HOSTS, host) is not None


async def test_with_webhooks_off_nothing_is_written(stores: Stores) -> None:
    host = "ob-" + uuid.uuid4().hex[:10]
    await stores.hosts.create_host(host, "Ada", None)
    await _knock(stores.store, host, "g1")
    await stores.store.set_presence(host, "away", None)
    assert await stores.redis.exists(keys.outbox(host)) == 0
    assert await stores.redis.zscore(keys.OUTBOX_HOSTS, host) is None
