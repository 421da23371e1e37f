"""Two-byte big-endian length-prefixed framing, with no I/O (bytes in, frames out).

The prefix is checked against ``max_frame`` *before* any buffer is grown, so a hostile
or corrupt prefix cannot make us allocate or wait for 64 KiB of nothing.
"""

from __future__ import annotations

import struct

from atm_common.errors import LocalProtocolError
from host_link.errors import FramingError

PREFIX = struct.Struct(">H")
DEFAULT_MAX_FRAME = 4096


def frame(payload: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Prefix ``payload`` with its length."""
    if not payload:
        raise LocalProtocolError("refusing to send an empty frame")
    if len(payload) > max_frame:
        raise LocalProtocolError(f"frame of {len(payload)} bytes exceeds {max_frame}")
    return PREFIX.pack(len(payload)) + payload


class FrameDecoder:
    """Accumulates stream bytes and yields whole frames, however the stream was split."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if not 0 < max_frame <= 0xFFFF:
            raise ValueError("max_frame must be 1..65535")
        self.max_frame = max_frame
        self._buffer = bytearray()
        self.error: FramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every frame now complete.

        A bad length prefix breaks the stream for good: the frames before it are still
        returned (and :attr:`error` is set), and this call or the next raises
        :class:`FramingError`, so no valid message is dropped for a later one's fault.
        """
        if self.error is not None:
            raise self.error
        self._buffer += data
        frames: list[bytes] = []
        while len(self._buffer) >= PREFIX.size:
            (length,) = PREFIX.unpack_from(self._buffer)
            problem = None
            if length == 0:
                problem = "zero-length frame"
            elif length > self.max_frame:
                problem = f"length prefix {length} exceeds the {self.max_frame}-byte limit"
            if problem is not None:
                self.error = FramingError(problem)
                self._buffer.clear()
                if frames:
                    return frames
                raise self.error
            end = PREFIX.size + length
            if len(self._buffer) < end:
                break
            frames.append(bytes(self._buffer[PREFIX.size : end]))
            del self._buffer[:end]
        return frames
