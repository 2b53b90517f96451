"""Tokens: host JWTs (HS256, ``sub`` = host id, ``exp`` honoured) and guest
JWTs for signed-in guests; constant-time API-key checks."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Any

import jwt

from protocol.errors import Unauthorized
from protocol.messages import HOST_ID_RE, unsafe


@dataclass(frozen=True, slots=True)
class HostClaims:
    host: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class GuestClaims:
    name: str | None
    email: str | None


class Tokens:
    """Every token must expire (``exp``), and no later than ``max_lifetime_s``
    from now: a leaked token without an end would open the host's lobby for good."""

    def __init__(self, secret: str, max_lifetime_s: int = 30 * 24 * 3600) -> None:
        self._secret = secret
        self._max_lifetime_s = max_lifetime_s

    def host_token(self, host: str, ttl_s: int = 12 * 3600) -> str:
        now = int(time.time())
        return jwt.encode(
            {"sub": host, "iat": now, "exp": now + ttl_s, "kind": "host"},
            self._secret,
            algorithm="HS256",
        )

    def guest_token(self, email: str, name: str | None = None, ttl_s: int = 3600) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": email,
            "email": email,
            "iat": now,
            "exp": now + ttl_s,
            "kind": "guest",
        }
        if name:
            claims["name"] = name
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                options={"require": ["sub", "exp"], "verify_exp": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"the token needs '{exc.claim}'") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None
        exp = claims["exp"]
        if not isinstance(exp, int | float) or exp - time.time() > self._max_lifetime_s:
            raise Unauthorized("the token lives longer than this server allows")
        return claims

    def host(self, token: str) -> HostClaims:
        claims = self._decode(token)
        sub = claims.get("sub")
        if (
            claims.get("kind", "host") != "host"
            or not isinstance(sub, str)
            or not HOST_ID_RE.match(sub)
        ):
            raise Unauthorized("not a host token")
        return HostClaims(sub, float(claims["exp"]))

    def guest(self, token: str) -> GuestClaims:
        claims = self._decode(token)
        if claims.get("kind") != "guest":
            raise Unauthorized("not a guest token")
        email = claims.get("email")
        name = claims.get("name")
        for value in (email, name):
            if isinstance(value, str) and unsafe(value):
                raise Unauthorized("the token's name or email holds a control character")
        return GuestClaims(
            name if isinstance(name, str) else None,
            email.lower() if isinstance(email, str) else None,
        )


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of API keys."""
    return hmac.compare_digest(given.encode(), expected.encode())
