"""Tokens: host JWTs (HS256, ``sub`` = host id, ``exp`` honoured) and guest
JWTs for signed-in guests; constant-time API-key checks."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Any

import jwt

from protocol.errors import Unauthorized
from protocol.messages import HOST_ID_RE


@dataclass(frozen=True, slots=True)
class HostClaims:
    host: str
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class GuestClaims:
    name: str | None
    email: str | None


class Tokens:
    def __init__(self, secret: str) -> None:
        self._secret = secret

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
                options={"require": ["sub"], "verify_exp": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None
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
        exp = claims.get("exp")
        return HostClaims(sub, float(exp) if isinstance(exp, int | float) else None)

    def guest(self, token: str) -> GuestClaims:
        claims = self._decode(token)
        if claims.get("kind") != "guest":
            raise Unauthorized("not a guest token")
        email = claims.get("email")
        name = claims.get("name")
        return GuestClaims(
            name if isinstance(name, str) else None,
            email.lower() if isinstance(email, str) else None,
        )


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of API keys."""
    return hmac.compare_digest(given.encode(), expected.encode())
