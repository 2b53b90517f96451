"""``client_address``: which hop of ``X-Forwarded-For`` is the client.

Proxies append, so only the right end of the list is written by hops we
trust; the client address is the rightmost hop that is not a trusted proxy
(uvicorn's ``ProxyHeadersMiddleware.get_trusted_client_address``)."""

from __future__ import annotations

from typing import Any

import pytest

from server.access.origins import client_address

PROXY = "10.0.0.1"


def scope(peer: str | None, *forwarded: str) -> dict[str, Any]:
    headers = [(b"host", b"foyer.test")]
    headers += [(b"x-forwarded-for", value.encode("latin-1")) for value in forwarded]
    return {"client": (peer, 51000) if peer else None, "headers": headers}


def test_untrusted_peer_ignores_the_header() -> None:
    assert client_address(scope("198.51.100.9", "6.6.6.6"), [PROXY]) == "198.51.100.9"


def test_no_trusted_proxies_ignores_the_header() -> None:
    assert client_address(scope(PROXY, "6.6.6.6"), []) == PROXY


def test_no_client_and_no_header() -> None:
    assert client_address(scope(None), [PROXY]) == "unknown"


def test_trusted_peer_without_header_is_the_peer() -> None:
    assert client_address(scope(PROXY), [PROXY]) == PROXY


def test_single_hop() -> None:
    assert client_address(scope(PROXY, "203.0.113.7"), [PROXY]) == "203.0.113.7"


def test_client_cannot_choose_its_address() -> None:
    """The client sent ``X-Forwarded-For: 6.6.6.6``; our proxy appended the
    address it saw. The leftmost entry is the client's own words."""
    assert client_address(scope(PROXY, "6.6.6.6, 203.0.113.7"), [PROXY]) == "203.0.113.7"


def test_walks_from_the_right_past_trusted_proxies() -> None:
    trusted = [PROXY, "10.0.0.2", "10.0.0.3"]
    forwarded = "6.6.6.6, 203.0.113.7, 10.0.0.3, 10.0.0.2"
    assert client_address(scope(PROXY, forwarded), trusted) == "203.0.113.7"


def test_an_untrusted_hop_stops_the_walk() -> None:
    """A hop we do not trust may have written anything to its left."""
    forwarded = "203.0.113.7, 192.0.2.50, 10.0.0.2"
    assert client_address(scope(PROXY, forwarded), [PROXY, "10.0.0.2"]) == "192.0.2.50"


def test_several_headers_join_in_order() -> None:
    assert (
        client_address(scope(PROXY, "6.6.6.6", "203.0.113.7, 10.0.0.2"), [PROXY, "10.0.0.2"])
        == "203.0.113.7"
    )
    assert client_address(scope(PROXY, "203.0.113.7", "6.6.6.6"), [PROXY]) == "6.6.6.6"


@pytest.mark.parametrize(
    "forwarded",
    [
        "6.6.6.6,203.0.113.7",
        "  6.6.6.6 ,\t203.0.113.7  ",
        "6.6.6.6, 203.0.113.7,",
        "6.6.6.6, , 203.0.113.7, ,",
        ",6.6.6.6,,203.0.113.7",
    ],
)
def test_whitespace_and_empty_entries(forwarded: str) -> None:
    assert client_address(scope(PROXY, forwarded), [PROXY]) == "203.0.113.7"


@pytest.mark.parametrize("forwarded", ["", " ", ", ,", "\t"])
def test_empty_header_is_the_peer(forwarded: str) -> None:
    assert client_address(scope(PROXY, forwarded), [PROXY]) == PROXY


def test_all_trusted_chain_is_the_leftmost() -> None:
    trusted = [PROXY, "10.0.0.2", "10.0.0.3"]
    assert client_address(scope(PROXY, "10.0.0.3, 10.0.0.2"), trusted) == "10.0.0.3"


def test_star_trusts_every_hop() -> None:
    """With ``*`` every hop is trusted, so the walk ends at the leftmost."""
    assert client_address(scope("198.51.100.9", "203.0.113.7, 10.9.9.9"), ["*"]) == "203.0.113.7"
    assert client_address(scope("198.51.100.9"), ["*"]) == "198.51.100.9"
