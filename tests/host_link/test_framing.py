"""Two-byte length-prefixed framing, sans I/O."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atm_common.errors import LocalProtocolError, RemoteProtocolError
from host_link.errors import FramingError
from host_link.framing import DEFAULT_MAX_FRAME, FrameDecoder, frame

PAYLOADS = [b"0800" + b"A" * 60, b"x", b"0210" + bytes(range(256)) * 3, b"\x00\x01\x02"]


def test_frame_prefixes_big_endian_length() -> None:
    assert frame(b"abc") == b"\x00\x03abc"
    assert frame(b"z" * 300)[:2] == b"\x01\x2c"


def test_frame_refuses_empty() -> None:
    with pytest.raises(LocalProtocolError, match="empty"):
        frame(b"")


def test_frame_refuses_oversized() -> None:
    assert frame(b"a" * DEFAULT_MAX_FRAME)[:2] == struct.pack(">H", DEFAULT_MAX_FRAME)
    with pytest.raises(LocalProtocolError, match="exceeds"):
        frame(b"a" * (DEFAULT_MAX_FRAME + 1))
    with pytest.raises(LocalProtocolError):
        frame(b"a" * 11, max_frame=10)


def test_one_frame_in_one_chunk() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(frame(b"hello")) == [b"hello"]
    assert decoder.buffered == 0


def test_several_frames_in_one_chunk() -> None:
    decoder = FrameDecoder()
    stream = b"".join(frame(p) for p in PAYLOADS)
    assert decoder.feed(stream) == PAYLOADS
    assert decoder.buffered == 0


def test_split_at_every_byte_boundary_yields_the_same_frames() -> None:
    stream = b"".join(frame(p) for p in PAYLOADS)
    for cut in range(len(stream) + 1):
        decoder = FrameDecoder()
        got = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert got == PAYLOADS, cut
        assert decoder.buffered == 0


def test_byte_by_byte() -> None:
    stream = b"".join(frame(p) for p in PAYLOADS)
    decoder = FrameDecoder()
    got: list[bytes] = []
    for i in range(len(stream)):
        got += decoder.feed(stream[i : i + 1])
    assert got == PAYLOADS


def test_partial_frame_is_buffered() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x05ab") == []
    assert decoder.buffered == 4
    assert decoder.feed(b"cde\x00") == [b"abcde"]
    assert decoder.buffered == 1


def test_empty_feed() -> None:
    assert FrameDecoder().feed(b"") == []


def test_zero_length_prefix_raises_at_once() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FramingError, match="zero-length"):
        decoder.feed(b"\x00\x00")


def test_oversized_prefix_raises_before_the_body_arrives() -> None:
    decoder = FrameDecoder()
    # Only the prefix: the decoder must not wait for (or buffer) 65535 bytes of body.
    with pytest.raises(FramingError, match="65535"):
        decoder.feed(b"\xff\xff")
    assert decoder.buffered <= 2


def test_oversized_prefix_split_across_feeds() -> None:
    decoder = FrameDecoder(max_frame=100)
    assert decoder.feed(b"\x00") == []
    with pytest.raises(FramingError):
        decoder.feed(b"\x65")  # 101


def test_max_frame_is_inclusive() -> None:
    decoder = FrameDecoder(max_frame=100)
    assert decoder.feed(frame(b"q" * 100, max_frame=100)) == [b"q" * 100]


def test_framing_error_is_remote() -> None:
    assert issubclass(FramingError, RemoteProtocolError)


@pytest.mark.parametrize("limit", [0, -1, 0x10000])
def test_max_frame_bounds(limit: int) -> None:
    with pytest.raises(ValueError):
        FrameDecoder(limit)


@settings(max_examples=200)
@given(
    payloads=st.lists(st.binary(min_size=1, max_size=300), max_size=10),
    cuts=st.lists(st.integers(0, 4000), max_size=10),
)
def test_any_split_yields_the_same_frames(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(p) for p in payloads)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    decoder = FrameDecoder()
    got: list[bytes] = []
    for a, b in itertools.pairwise(points):
        got += decoder.feed(stream[a:b])
    assert got == payloads
    assert decoder.buffered == 0


@settings(max_examples=300)
@given(st.binary(max_size=500))
def test_random_bytes_give_frames_or_framing_error(data: bytes) -> None:
    decoder = FrameDecoder(max_frame=200)
    try:
        frames = decoder.feed(data)
    except FramingError:
        return
    assert all(0 < len(f) <= 200 for f in frames)
    assert decoder.buffered < 202


def test_frames_before_a_bad_prefix_do_not_depend_on_the_split() -> None:
    stream = frame(b"first") + frame(b"second") + b"\x00\x00"

    def frames_before_error(chunks: list[bytes]) -> list[bytes]:
        decoder, got = FrameDecoder(), []
        try:
            for chunk in chunks:
                got += decoder.feed(chunk)
        except FramingError:
            pass
        return got

    split = frames_before_error([stream[:15], stream[15:]])
    assert split == [b"first", b"second"]
    assert frames_before_error([stream]) == split


def test_frames_before_a_bad_prefix_are_returned_then_the_error() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(frame(b"ok") + b"\xff\xff" + b"junk") == [b"ok"]
    assert isinstance(decoder.error, FramingError)
    with pytest.raises(FramingError):
        decoder.feed(frame(b"later"))  # the stream stays broken
    with pytest.raises(FramingError):
        decoder.feed(b"")


def test_bad_prefix_alone_raises_in_the_same_call() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FramingError):
        decoder.feed(b"\x00\x00" + frame(b"after"))
    assert decoder.error is not None
