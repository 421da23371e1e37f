"""The sans-I/O Connection: bytes <-> events, request/response matching."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from atm_common.crypto.mac import retail_mac
from atm_common.errors import LocalProtocolError
from host_link.codec import Message, decode, encode
from host_link.connection import (
    Connection,
    MacFailure,
    MalformedMessage,
    MessageReceived,
    ResponseReceived,
    match_key,
)
from host_link.errors import CodecError, FramingError
from host_link.framing import frame


def response_to(request: Message, code: str = "00", **extra: str) -> Message:
    mti = request["t"][:2] + str(int(request["t"][2]) + 1) + "0"
    return {"t": mti, "11": request["11"], "41": request["41"], "39": code, **extra}


def echo(stan: str = "000001", terminal: str = "ATM00001") -> Message:
    return {"t": "0800", "7": "0101120000", "11": stan, "41": terminal, "70": "301"}


def wire(message: Message) -> bytes:
    return frame(encode(message))


def test_send_frames_and_encodes(auth_request: Message) -> None:
    conn = Connection()
    data = conn.send(auth_request)
    assert int.from_bytes(data[:2], "big") == len(data) - 2
    assert decode(data[2:]) == auth_request
    assert conn.pending == 0


def test_response_is_matched_to_its_request(auth_request: Message) -> None:
    conn = Connection()
    conn.send(auth_request, expect_response=True)
    assert conn.pending == 1
    response = response_to(auth_request)
    events = conn.receive_data(wire(response))
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, ResponseReceived)
    assert event.message == response
    assert event.request == auth_request
    assert conn.pending == 0


def test_matching_uses_stan_and_terminal_id() -> None:
    conn = Connection()
    a, b = echo("000001"), echo("000002")
    conn.send(a, expect_response=True)
    conn.send(b, expect_response=True)
    other_terminal = response_to(a) | {"41": "ATM00002"}
    other_stan = response_to(a) | {"11": "000003"}
    wrong_mti = response_to(a) | {"t": "0110"}
    events = conn.receive_data(
        wire(other_terminal) + wire(other_stan) + wire(wrong_mti) + wire(response_to(b))
    )
    assert [type(e) for e in events] == [
        MessageReceived,
        MessageReceived,
        MessageReceived,
        ResponseReceived,
    ]
    assert isinstance(events[3], ResponseReceived) and events[3].request == b
    assert conn.pending == 1
    (last,) = conn.receive_data(wire(response_to(a)))
    assert isinstance(last, ResponseReceived) and last.request == a


def test_a_response_is_matched_only_once() -> None:
    conn = Connection()
    request = echo()
    conn.send(request, expect_response=True)
    first, second = conn.receive_data(wire(response_to(request)) * 2)
    assert isinstance(first, ResponseReceived)
    assert isinstance(second, MessageReceived)


def test_unsolicited_message_event() -> None:
    conn = Connection()
    (event,) = conn.receive_data(wire(echo()))
    assert isinstance(event, MessageReceived)
    assert event.message == echo()


def test_responses_out_of_order() -> None:
    conn = Connection()
    requests = [echo(f"{i:06d}") for i in range(1, 6)]
    for r in requests:
        conn.send(r, expect_response=True)
    data = b"".join(wire(response_to(r)) for r in reversed(requests))
    events = conn.receive_data(data)
    assert all(isinstance(e, ResponseReceived) for e in events)
    assert [e.request for e in events if isinstance(e, ResponseReceived)] == requests[::-1]


def test_duplicate_outstanding_stan_refused() -> None:
    conn = Connection()
    conn.send(echo(), expect_response=True)
    with pytest.raises(LocalProtocolError, match="000001"):
        conn.send(echo(), expect_response=True)
    assert conn.pending == 1


def test_forget() -> None:
    conn = Connection()
    request = echo()
    conn.send(request, expect_response=True)
    conn.forget(request)
    assert conn.pending == 0
    # A late answer is now just a message, and the STAN may be used again.
    (late,) = conn.receive_data(wire(response_to(request)))
    assert isinstance(late, MessageReceived)
    conn.send(request, expect_response=True)
    assert conn.pending == 1
    conn.forget(request)
    conn.forget(request)  # twice is harmless
    assert conn.pending == 0


def test_malformed_message_keeps_partial_fields(auth_request: Message) -> None:
    conn = Connection()
    data = encode(auth_request)
    cut = data.index(b"ATM00001") + 8 + 5  # inside field 42, after 41
    (event,) = conn.receive_data(frame(data[:cut]))
    assert isinstance(event, MalformedMessage)
    assert isinstance(event.error, CodecError)
    assert event.error.field == "42"
    assert event.partial["t"] == "0100"
    assert event.partial["11"] == auth_request["11"]
    assert event.partial["41"] == "ATM00001"
    assert event.partial["2"] == auth_request["2"]
    assert event.partial.get("42", "") == ""  # the damaged field holds nothing
    assert "43" not in event.partial and "p" not in event.partial
    # The repr is safe to log.
    assert auth_request["2"] not in repr(event)


def test_malformed_message_does_not_break_the_stream() -> None:
    conn = Connection()
    events = conn.receive_data(frame(b"nonsense") + wire(echo()))
    assert isinstance(events[0], MalformedMessage)
    assert isinstance(events[1], MessageReceived)
    assert events[1].message == echo()


def test_garbage_with_no_readable_fields() -> None:
    conn = Connection()
    (event,) = conn.receive_data(frame(b"\xff\xfe"))
    assert isinstance(event, MalformedMessage)
    assert event.error.field == "t"
    assert not any(event.partial.values())


def test_non_digit_mti_gives_empty_partial() -> None:
    conn = Connection()
    data = encode(echo() | {"t": "08X0"})
    (event,) = conn.receive_data(frame(data))
    assert isinstance(event, MalformedMessage)
    assert event.error.field == "t"
    assert "11" not in event.partial


def test_framing_error_propagates() -> None:
    conn = Connection()
    with pytest.raises(FramingError):
        conn.receive_data(b"\xff\xff")


def test_max_frame_applies_to_send() -> None:
    conn = Connection(max_frame=20)
    with pytest.raises(LocalProtocolError):
        conn.send(echo())


def test_byte_by_byte_receive(auth_request: Message) -> None:
    conn = Connection()
    conn.send(auth_request, expect_response=True)
    data = wire(response_to(auth_request, "55"))
    events = []
    for i in range(len(data)):
        events += conn.receive_data(data[i : i + 1])
    assert len(events) == 1 and isinstance(events[0], ResponseReceived)
    assert events[0].message["39"] == "55"


def test_match_key() -> None:
    assert match_key(echo(), as_response=True) == ("0810", "000001", "ATM00001")
    assert match_key({"t": "0421", "11": "1"}, as_response=True) == ("0430", "1", "")
    assert match_key({"t": "0210"}, as_response=False) == ("0210", "", "")


def test_event_reprs_mask_the_pan(auth_request: Message) -> None:
    conn = Connection()
    (event,) = conn.receive_data(wire(auth_request))
    assert auth_request["2"] not in repr(event)
    assert "476173" in repr(event)


# -- with a MAC on every message ---------------------------------------------------------


class RetailMac:
    """An authenticator with one TDES key (ISO 9797-1 algorithm 3)."""

    def __init__(self, key: bytes = bytes.fromhex("7CA110454A1A6E570131D9619DC1376E")) -> None:
        self.key = key

    def sign(self, message: Mapping[str, str], data: bytes) -> bytes:
        return retail_mac(self.key, data)


def test_signed_response_is_matched() -> None:
    terminal, host = Connection(authenticator=RetailMac()), Connection(authenticator=RetailMac())
    request = echo()
    (received,) = host.receive_data(terminal.send(request, expect_response=True))
    assert isinstance(received, MessageReceived)
    assert received.message["128"] != "0" * 16  # field 70 present: MAC in 128
    (answer,) = terminal.receive_data(host.send(response_to(request), bound_to=received.mac))
    assert isinstance(answer, ResponseReceived)
    assert answer.request == request


def test_a_response_is_bound_to_its_request() -> None:
    """A validly MACed answer to another request (or to none) is no answer: it does not
    verify against the request the terminal sent (the signed-63 man in the middle)."""
    terminal, host = Connection(authenticator=RetailMac()), Connection(authenticator=RetailMac())
    genuine = echo()
    sent = terminal.send(genuine, expect_response=True)
    altered = dict(genuine, **{"12": "000000"})  # the attacker's copy: same STAN and terminal
    (received,) = host.receive_data(Connection(authenticator=RetailMac()).send(altered))
    assert isinstance(received, MessageReceived) and received.mac
    forged = host.send(response_to(genuine), bound_to=received.mac)
    (answer,) = terminal.receive_data(forged)
    assert isinstance(answer, MacFailure)
    unbound = host.send(response_to(genuine))  # signed, but bound to nothing
    (answer,) = terminal.receive_data(unbound)
    assert isinstance(answer, MacFailure)
    (genuine_received,) = host.receive_data(sent)
    assert isinstance(genuine_received, MessageReceived)
    (answer,) = terminal.receive_data(
        host.send(response_to(genuine), bound_to=genuine_received.mac)
    )
    assert isinstance(answer, ResponseReceived)


def test_an_unsigned_reply_never_verifies() -> None:
    terminal, host = Connection(authenticator=RetailMac()), Connection(authenticator=RetailMac())
    request = echo()
    terminal.send(request, expect_response=True)
    (answer,) = terminal.receive_data(host.send_unsigned(response_to(request) | {"39": "63"}))
    assert isinstance(answer, MacFailure)


def test_primary_only_message_carries_mac_in_64(auth_request: Message) -> None:
    data = Connection(authenticator=RetailMac()).send(auth_request)
    assert "64" in decode(data[2:])


def test_tampered_message_is_a_mac_failure() -> None:
    terminal, host = Connection(authenticator=RetailMac()), Connection(authenticator=RetailMac())
    data = bytearray(terminal.send(echo()))
    at = data.index(b"ATM00001")
    data[at + 7] = ord("2")
    (event,) = host.receive_data(bytes(data))
    assert isinstance(event, MacFailure)
    assert "verify" in event.reason


def test_unsigned_message_is_a_mac_failure() -> None:
    host = Connection(authenticator=RetailMac())
    (event,) = host.receive_data(wire(echo()))
    assert isinstance(event, MacFailure)
    assert "missing" in event.reason


def test_mac_under_another_key_fails() -> None:
    terminal = Connection(authenticator=RetailMac(bytes(range(16))))
    host = Connection(authenticator=RetailMac())
    (event,) = host.receive_data(terminal.send(echo()))
    assert isinstance(event, MacFailure)


def test_mac_failure_does_not_consume_the_pending_request() -> None:
    terminal = Connection(authenticator=RetailMac())
    request = echo()
    terminal.send(request, expect_response=True)
    forged = Connection(authenticator=RetailMac(bytes(range(16))))
    (event,) = terminal.receive_data(forged.send(response_to(request)))
    assert isinstance(event, MacFailure)
    assert terminal.pending == 1
