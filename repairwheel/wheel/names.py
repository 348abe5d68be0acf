"""Wheel file names and the WHEEL file's tags: parsing a name, joining one, and rewriting the
``Tag:`` and ``Root-Is-Purelib:`` lines of WHEEL when a repair re-tags a wheel."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Union

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from ..errors import WheelError

WheelText = Union[bytes, bytearray]

_TAG = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class WheelFilename:
    """The components of a wheel file name, exactly as written (dot-joined tag sets split)."""

    name: str
    version: str
    build: str
    python_tags: tuple[str, ...]
    abi_tags: tuple[str, ...]
    platform_tags: tuple[str, ...]

    @classmethod
    def parse(cls, filename: str) -> WheelFilename:
        """Split a validated wheel file name; WheelError if it is not one."""
        try:
            parse_wheel_filename(filename)
        except InvalidWheelFilename as exc:
            raise WheelError(f"{filename}: not a valid wheel file name: {exc}") from None
        parts = filename[: -len(".whl")].split("-")
        python, abi, platform = (tuple(part.split(".")) for part in parts[-3:])
        return cls(parts[0], parts[1], parts[2] if len(parts) == 6 else "", python, abi, platform)

    @property
    def tags(self) -> frozenset[Tag]:
        """Every tag the name's tag sets expand to (``py2.py3-none-any`` is two tags)."""
        return frozenset(
            Tag(py, abi, plat)
            for py in self.python_tags
            for abi in self.abi_tags
            for plat in self.platform_tags
        )

    @property
    def is_pure(self) -> bool:
        """The name says ``any`` platform: the wheel holds no compiled code to repair."""
        return self.platform_tags == ("any",)

    def __str__(self) -> str:
        return wheel_filename(
            self.name,
            self.version,
            self.build,
            self.python_tags,
            self.abi_tags,
            self.platform_tags,
        )


def wheel_filename(
    name: str,
    version: str,
    build: str,
    python_tags: Iterable[str],
    abi_tags: Iterable[str],
    platform_tags: Iterable[str],
) -> str:
    """Join wheel file name components; ``-`` in name and version becomes ``_`` as PEP 427 asks."""
    fields = [re.sub("-+", "_", name), re.sub("-+", "_", version)]
    fields += [build] if build else []
    fields += [".".join(python_tags), ".".join(abi_tags), ".".join(platform_tags)]
    return "-".join(fields) + ".whl"


def replace_platform_tags(
    filename: WheelFilename, wheel_text: WheelText, platform_tags: Iterable[str]
) -> tuple[WheelFilename, bytes]:
    """Give the file name and the WHEEL ``Tag:`` lines exactly ``platform_tags`` (sorted), and
    make the WHEEL say ``Root-Is-Purelib: false`` (see :func:`platlib_wheel_text`).

    Every python-abi pair of the existing ``Tag:`` lines gets one line per platform; other WHEEL
    lines are kept as they are, and the text is returned unchanged when nothing changes. Pure
    wheels are returned untouched.
    """
    if filename.is_pure:
        return filename, bytes(wheel_text)
    platforms = tuple(sorted(set(platform_tags)))
    if not platforms or not all(_TAG.fullmatch(tag) for tag in platforms):
        raise WheelError(f"{filename}: invalid platform tags {platforms!r}")
    text = platlib_wheel_text(filename, wheel_text).decode("utf-8")
    lines = text.splitlines(keepends=True)
    header_end = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
    tag_lines = [i for i in range(header_end) if _header_name(lines[i]) == "tag"]
    old = [lines[i].split(":", 1)[1].strip() for i in tag_lines]
    pairs: dict[tuple[str, str], None] = {}
    for value in old:
        fields = value.split("-")
        if len(fields) != 3:
            raise WheelError(f"{filename}: bad WHEEL Tag line {value!r}")
        pairs.update(dict.fromkeys(itertools.product(fields[0].split("."), fields[1].split("."))))
    if not old:
        pairs = dict.fromkeys(itertools.product(filename.python_tags, filename.abi_tags))
    new = [f"{py}-{abi}-{plat}" for py, abi in pairs for plat in platforms]
    if set(new) != set(old):
        eol = "\r\n" if "\r\n" in text else "\n"
        at = tag_lines[0] if tag_lines else header_end
        if at and not lines[at - 1].endswith(("\n", "\r")):
            lines[at - 1] += eol
        kept = [line for i, line in enumerate(lines) if i not in tag_lines]
        kept[at:at] = [f"Tag: {tag}{eol}" for tag in new]
        text = "".join(kept)
    return replace(filename, platform_tags=platforms), text.encode("utf-8")


def platlib_wheel_text(filename: WheelFilename, wheel_text: WheelText) -> bytes:
    """WHEEL with every ``Root-Is-Purelib: true`` header turned into ``Root-Is-Purelib: false``,
    each line keeping its header spelling and line ending; the rest is kept byte for byte.

    A wheel holding compiled code is a platlib wheel: with ``true`` its root (and the
    ``<name>.libs/`` a repair grafts) installs to purelib, which is not platlib on Fedora/RHEL
    (lib vs lib64). auditwheel makes the same change when it re-tags a wheel.
    """
    try:
        lines = bytes(wheel_text).decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError as exc:
        raise WheelError(f"{filename}: WHEEL is not UTF-8: {exc}") from None
    for i, line in enumerate(lines):
        if not line.strip():
            break  # the end of the headers
        if _header_name(line) == "root-is-purelib":
            key, value = line.split(":", 1)
            if value.strip().lower() == "true":  # pip's reading: case-insensitive
                lines[i] = f"{key}: false{line[len(line.rstrip(chr(13) + chr(10))) :]}"
    return "".join(lines).encode("utf-8")


def _header_name(line: str) -> str:
    return line.split(":", 1)[0].strip().lower() if ":" in line else ""
