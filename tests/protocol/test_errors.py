"""The exception tree, the wire error codes and the close codes (PROTOCOL.md, Errors)."""

from __future__ import annotations

import pytest

from protocol.errors import (
    CLOSE_FOR_CODE,
    AlreadyResolved,
    BadFrame,
    BadMessage,
    CloseCode,
    ConnectionClosed,
    ErrorCode,
    FoyerError,
    FrameTooLarge,
    InternalError,
    Locked,
    NotInMeeting,
    ProtocolError,
    RateLimited,
    Unauthorized,
    UnknownGuest,
    UnknownLink,
    error_for_code,
)

# Written out from PROTOCOL.md, not derived from the module under test.
BY_CODE: dict[str, type[ProtocolError]] = {
    "bad_frame": BadFrame,
    "bad_message": BadMessage,
    "unauthorized": Unauthorized,
    "unknown_link": UnknownLink,
    "unknown_guest": UnknownGuest,
    "already_resolved": AlreadyResolved,
    "not_in_meeting": NotInMeeting,
    "locked": Locked,
    "rate_limited": RateLimited,
    "too_large": FrameTooLarge,
    "internal": InternalError,
}


def test_every_wire_code_has_an_exception() -> None:
    assert set(BY_CODE) == {code.value for code in ErrorCode}


@pytest.mark.parametrize(("code", "cls"), sorted(BY_CODE.items()))
def test_error_for_code(code: str, cls: type[ProtocolError]) -> None:
    exc = error_for_code(code, "said by the server")
    assert type(exc) is cls and exc.code == code
    assert exc.message == "said by the server" and exc.close_code is None
    assert isinstance(exc, ProtocolError) and isinstance(exc, FoyerError)
    closed = error_for_code(code, None, close_code=4004)
    assert closed.close_code == 4004 and closed.message == cls.default_message


def test_unknown_code_from_a_newer_server_is_an_internal_error() -> None:
    exc = error_for_code("quota_exceeded", "over your quota", close_code=1008)
    assert type(exc) is InternalError
    assert exc.message == "over your quota" and exc.close_code == 1008


def test_raised_errors_have_no_close_code() -> None:
    assert AlreadyResolved().close_code is None
    assert RateLimited("slow down").message == "slow down"


def test_connection_closed_is_in_the_tree() -> None:
    exc = ConnectionClosed(4409, "replaced")
    assert isinstance(exc, FoyerError) and not isinstance(exc, ProtocolError)
    assert (exc.close_code, exc.reason) == (4409, "replaced")
    assert str(exc) == "closed (4409): replaced"


def test_close_codes() -> None:
    """PROTOCOL.md's close codes, and the additions in docs/protocol.md."""
    assert {code.name: code.value for code in CloseCode} == {
        "NORMAL": 1000,
        "GOING_AWAY": 1001,
        "POLICY": 1008,
        "TOO_LARGE": 1009,
        "INTERNAL": 1011,
        "SERVICE_RESTART": 1012,
        "UNAUTHORIZED": 4001,
        "UNKNOWN_LINK": 4004,
        "HANDSHAKE_TIMEOUT": 4008,
        "SLOW_CONSUMER": 4013,
        "RATE_LIMITED": 4029,
        "REPLACED": 4409,
        "LOCKED": 4423,
    }


def test_close_code_for_an_error_that_ends_a_connection() -> None:
    assert CLOSE_FOR_CODE == {
        ErrorCode.UNAUTHORIZED: 4001,
        ErrorCode.UNKNOWN_LINK: 4004,
        ErrorCode.LOCKED: 4423,
        ErrorCode.RATE_LIMITED: 4029,
        ErrorCode.TOO_LARGE: 1009,
        ErrorCode.INTERNAL: 1011,
    }
