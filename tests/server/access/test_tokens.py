"""Host and guest tokens: every token expires, and not too far away."""

from __future__ import annotations

import time

import jwt
import pytest

from protocol.errors import Unauthorized
from server.access.tokens import Tokens

SECRET = "s" * 40


def _token(**claims: object) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


def test_a_token_the_server_made_is_accepted() -> None:
    tokens = Tokens(SECRET)
    claims = tokens.host(tokens.host_token("ada", ttl_s=60))
    assert claims.host == "ada" and claims.expires_at > time.time()


def test_a_host_token_without_exp_is_refused() -> None:
    with pytest.raises(Unauthorized, match="needs 'exp'"):
        Tokens(SECRET).host(_token(sub="ada"))


def test_a_guest_token_without_exp_is_refused() -> None:
    with pytest.raises(Unauthorized, match="needs 'exp'"):
        Tokens(SECRET).guest(_token(sub="e@x.y", email="e@x.y", kind="guest"))


def test_a_token_that_lives_too_long_is_refused() -> None:
    tokens = Tokens(SECRET, max_lifetime_s=3600)
    with pytest.raises(Unauthorized, match="longer than this server allows"):
        tokens.host(_token(sub="ada", exp=int(time.time()) + 7200))
    assert tokens.host(_token(sub="ada", exp=int(time.time()) + 600)).host == "ada"


def test_an_expired_token_says_so() -> None:
    with pytest.raises(Unauthorized, match="expired"):
        Tokens(SECRET).host(_token(sub="ada", exp=int(time.time()) - 5))
