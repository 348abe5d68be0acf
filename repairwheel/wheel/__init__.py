"""Wheel archives, read in place and rewritten without recompressing what did not change.

A repair touches a handful of members of wheels that hold up to 12k files and 500 MB of
compressed data. So nothing is extracted to disk: members are read straight from the zip
(:mod:`.zipread`, :mod:`.archive`), unchanged members are copied as their compressed bytes, and
only new or patched members are deflated (:mod:`.zipwrite`, :mod:`.writer`). The output appears
under its final name only once it is complete. :mod:`.names` handles file names and WHEEL tags,
:mod:`.records` RECORD.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

if TYPE_CHECKING:
    from .archive import WheelArchive, WheelMetadata
    from .names import WheelFilename, platlib_wheel_text, replace_platform_tags, wheel_filename
    from .records import RecordHash, RecordMismatch, RecordRow, record_hash
    from .reuse import Reuse, find_runs, runs_around
    from .writer import WheelWriter, source_date_epoch
    from .zipread import Member, RawEntry
    from .zipwrite import streams

# Imported on first use, so that a command's first step (the early inflate, which needs only
# .early) does not wait for the whole package: 0.05 s at start-up.
_LAZY = {
    "WheelArchive": "archive",
    "WheelMetadata": "archive",
    "WheelFilename": "names",
    "platlib_wheel_text": "names",
    "replace_platform_tags": "names",
    "wheel_filename": "names",
    "RecordHash": "records",
    "RecordMismatch": "records",
    "RecordRow": "records",
    "record_hash": "records",
    "Reuse": "reuse",
    "find_runs": "reuse",
    "runs_around": "reuse",
    "WheelWriter": "writer",
    "source_date_epoch": "writer",
    "Member": "zipread",
    "RawEntry": "zipread",
    "streams": "zipwrite",
}


__getattr__ = lazy_attributes(__name__, _LAZY, globals())


__all__ = [
    "Member",
    "RawEntry",
    "RecordHash",
    "RecordMismatch",
    "RecordRow",
    "Reuse",
    "WheelArchive",
    "WheelFilename",
    "WheelMetadata",
    "WheelWriter",
    "find_runs",
    "runs_around",
    "platlib_wheel_text",
    "record_hash",
    "replace_platform_tags",
    "source_date_epoch",
    "streams",
    "wheel_filename",
]
