"""One-click reply links for the away email: signed, expiring, single use.

A link carries a JWT (HS256, the server's secret, ``kind: reply``) naming the
host, the guest and the action, with a random nonce. Opening it only shows a
confirmation page (mail scanners prefetch links: a GET never acts); the page's
button POSTs, and the store lets each nonce act once.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

from protocol.errors import Unauthorized

ACTIONS = ("admit", "new_meeting", "busy")


class LinkExpired(Unauthorized):
    """The link is genuine but too old."""


@dataclass(frozen=True, slots=True)
class ReplyClaim:
    host: str
    guest: str
    action: str
    nonce: str
    expires_at: float


class ReplyLinks:
    def __init__(self, secret: str, ttl_s: int) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    def make(self, host: str, guest: str, action: str) -> str:
        if action not in ACTIONS:
            raise ValueError(f"no reply link for {action!r}")
        now = int(time.time())
        claims = {
            "kind": "reply",
            "sub": host,
            "guest": guest,
            "action": action,
            "nonce": secrets.token_urlsafe(12),
            "iat": now,
            "exp": now + self.ttl_s,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def read(self, token: str) -> ReplyClaim:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                options={"require": ["sub", "exp", "nonce"]},
            )
        except jwt.ExpiredSignatureError:
            raise LinkExpired("this link has expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("this link is not valid") from None
        fields = [claims.get(k) for k in ("sub", "guest", "action", "nonce")]
        if claims.get("kind") != "reply" or not all(isinstance(f, str) for f in fields):
            raise Unauthorized("this link is not valid")
        if claims["action"] not in ACTIONS:
            raise Unauthorized("this link is not valid")
        return ReplyClaim(
            claims["sub"], claims["guest"], claims["action"], claims["nonce"], claims["exp"]
        )
