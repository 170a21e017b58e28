"""Reading TensorBoard event files back, for the tests: tensorboardX writes them but has no reader.

An event file is a sequence of TFRecords: uint64 length, uint32 masked CRC-32C of the length,
the data (a serialized `Event` protobuf), uint32 masked CRC-32C of the data; all little-endian.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from tensorboardX.crc32c import crc32c
from tensorboardX.proto.event_pb2 import Event


def _masked_crc(data: bytes) -> int:
    x = crc32c(data) & 0xFFFFFFFF
    return (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path: str | Path) -> list[Event]:
    """Every Event of one file, checking the framing and both CRCs of each record."""
    raw = Path(path).read_bytes()
    events, pos = [], 0
    while pos < len(raw):
        header = raw[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", raw[pos + 8:pos + 12])
        assert header_crc == _masked_crc(header), f"{path}: bad length CRC at byte {pos}"
        data = raw[pos + 12:pos + 12 + length]
        assert len(data) == length, f"{path}: truncated record at byte {pos}"
        (data_crc,) = struct.unpack("<I", raw[pos + 12 + length:pos + 16 + length])
        assert data_crc == _masked_crc(data), f"{path}: bad data CRC at byte {pos}"
        event = Event()
        event.ParseFromString(data)
        events.append(event)
        pos += 16 + length
    return events


def read_folder(folder: str | Path) -> dict[str, Any]:
    """All event files of one folder: {"scalars": {tag: [(step, value), ...]}, "histograms": {tag:
    [(step, HistogramProto), ...]}}, in the order written."""
    scalars: dict[str, list[tuple[int, float]]] = {}
    histograms: dict[str, list[tuple[int, Any]]] = {}
    files = [read_records(path) for path in Path(folder).glob("events.out.tfevents.*")]
    assert files, f"no event file in {folder}"
    # in the order they were written: by the wall time of each file's first event (its file_version)
    for events in sorted(files, key=lambda events: events[0].wall_time if events else 0.0):
        for event in events:
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if value.HasField("histo"):
                    histograms.setdefault(value.tag, []).append((event.step, value.histo))
                else:
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return {"scalars": scalars, "histograms": histograms}
