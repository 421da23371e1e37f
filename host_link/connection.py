"""The host link connection as a sans-I/O state holder (the h11 model).

It turns bytes into events and messages into bytes; sockets live elsewhere
(:mod:`host_link.client`, :mod:`sim.host.server`). A client-side connection also
matches responses to the requests it sent, by (response MTI, STAN, terminal id).

Both sides bind a response to its request (see :mod:`host_link.authentication`): the
client remembers the MAC of each request it sent and checks the answer's MAC over it; a
received request carries its MAC in the event (:attr:`MessageReceived.mac`), and the
server signs its reply over it (``send(reply, bound_to=event.mac)``). A reply to a
request that was not authenticated goes out unsigned (:meth:`Connection.send_unsigned`),
so it can never pass for an answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import iso8583

from atm_common.errors import LocalProtocolError
from host_link.authentication import Authenticator, check_mac, encode_signed, mac_of
from host_link.codec import Message, decode, describe, encode
from host_link.codes import response_mti
from host_link.errors import CodecError, FramingError
from host_link.framing import DEFAULT_MAX_FRAME, FrameDecoder, frame
from host_link.spec import SPEC

MatchKey = tuple[str, str, str]


@dataclasses.dataclass(frozen=True, repr=False)
class MessageReceived:
    """A well-formed message that is not an answer to one of our requests.

    ``mac``: its MAC as received (empty without authentication), to bind a reply to it.
    """

    message: Message
    mac: bytes = b""

    def __repr__(self) -> str:
        return f"MessageReceived({describe(self.message)})"


@dataclasses.dataclass(frozen=True, repr=False)
class ResponseReceived:
    """A well-formed response, paired with the request we sent."""

    message: Message
    request: Message

    def __repr__(self) -> str:
        return f"ResponseReceived({describe(self.message)})"


@dataclasses.dataclass(frozen=True, repr=False)
class MalformedMessage:
    """A whole frame whose content did not decode.

    ``partial`` holds the fields decoded before the error (MTI, STAN, terminal id when the
    damage is further on), so a server can still answer with response code 30.
    """

    error: CodecError
    partial: Message

    def __repr__(self) -> str:
        return f"MalformedMessage({self.error}, {describe(self.partial)})"


@dataclasses.dataclass(frozen=True, repr=False)
class MacFailure:
    """A message that decoded but whose MAC is missing or wrong: not to be acted on."""

    message: Message
    reason: str

    def __repr__(self) -> str:
        return f"MacFailure({self.reason}, {describe(self.message)})"


Event = MessageReceived | ResponseReceived | MalformedMessage | MacFailure


def match_key(message: Mapping[str, str], *, as_response: bool) -> MatchKey:
    mti = message.get("t", "")
    if as_response:
        mti = response_mti(mti)
    return (mti, message.get("11", ""), message.get("41", ""))


class Connection:
    """Bytes <-> ISO 8583 events for one TCP stream."""

    def __init__(
        self, max_frame: int = DEFAULT_MAX_FRAME, authenticator: Authenticator | None = None
    ) -> None:
        """``authenticator`` MACs every message sent and checks every one received."""
        self.max_frame = max_frame
        self.authenticator = authenticator
        self._decoder = FrameDecoder(max_frame)
        self._pending: dict[MatchKey, tuple[Message, bytes]] = {}

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def broken(self) -> FramingError | None:
        """Set once the byte stream can no longer be framed: close the connection."""
        return self._decoder.error

    def send(
        self, message: Mapping[str, str], *, expect_response: bool = False, bound_to: bytes = b""
    ) -> bytes:
        """Encode and frame ``message``; when ``expect_response``, remember it for matching.

        ``bound_to``: for a reply, the MAC of the request it answers
        (:attr:`MessageReceived.mac`), which the reply's MAC then covers.
        """
        key = match_key(message, as_response=True) if expect_response else None
        if key is not None and key in self._pending:
            raise LocalProtocolError(f"a request with STAN {key[1]} is already outstanding")
        if self.authenticator is not None:
            payload = encode_signed(message, self.authenticator, bound_to)
        else:
            payload = encode(message)
        data = frame(payload, self.max_frame)
        if key is not None:
            self._pending[key] = (dict(message), mac_of(payload) if self.authenticator else b"")
        return data

    def send_unsigned(self, message: Mapping[str, str]) -> bytes:
        """Encode and frame ``message`` without a MAC: the answer to a request that was not
        authenticated, which must never verify as an answer to anything."""
        return frame(encode(message), self.max_frame)

    def forget(self, message: Mapping[str, str]) -> None:
        """Stop waiting for the answer to ``message`` (it timed out)."""
        self.forget_key(match_key(message, as_response=True))

    def forget_key(self, key: MatchKey) -> None:
        """Stop waiting for the answer matched by ``key`` (it failed its MAC)."""
        self._pending.pop(key, None)

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed stream bytes; raises :class:`~host_link.errors.FramingError` if unrecoverable."""
        events: list[Event] = []
        for payload in self._decoder.feed(data):
            try:
                message = decode(payload)
            except CodecError as exc:
                events.append(MalformedMessage(exc, _partial(payload)))
                continue
            key = match_key(message, as_response=False)
            pending = self._pending.get(key)
            if self.authenticator is not None:
                bound_to = pending[1] if pending is not None else b""
                problem = check_mac(message, payload, self.authenticator, bound_to)
                if problem is not None:
                    events.append(MacFailure(message, problem))
                    continue
            if pending is not None:
                del self._pending[key]
                events.append(ResponseReceived(message, pending[0]))
            else:
                mac = mac_of(payload) if self.authenticator is not None else b""
                events.append(MessageReceived(message, mac))
        return events


def _partial(payload: bytes) -> Message:
    """The fields that decode before the damage, for an error reply."""
    try:
        iso8583.decode(payload, SPEC)
    except iso8583.DecodeError as exc:
        return {k: v for k, v in exc.doc_dec.items() if k not in {"p", "1"}}
    return {}
