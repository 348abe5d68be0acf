"""Native functions the C core calls through pointers: the system zlib (where no zlib-ng
extension is installed) and OpenSSL's EVP digests, as Python's ``_hashlib`` links them, so the
core can inflate, deflate and hash with the GIL released; and libc's ``sync_file_range``,
which Python's ``os`` lacks."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from dataclasses import dataclass
from typing import Any

from .._elfcore import ffi

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenSSL:
    """The EVP library (``lib``, for ctypes calls) and the pointers the C core takes."""

    lib: ctypes.CDLL
    update_pointer: Any  # EVP_DigestUpdate
    init_pointer: Any  # EVP_DigestInit_ex
    final_pointer: Any  # EVP_DigestFinal_ex
    sha256: int  # EVP_sha256()'s result


def function_pointer(cdll: ctypes.CDLL, name: str) -> Any:
    """``name`` in ``cdll`` as the C core's generic ``void (*)(void)``."""
    address = ctypes.cast(getattr(cdll, name), ctypes.c_void_p).value
    return ffi.cast("void (*)(void)", address)


def system_zlib() -> ctypes.CDLL:
    """The system's libz (the C core's RW_ZLIB flavour)."""
    return ctypes.CDLL(ctypes.util.find_library("z") or "libz.so.1")


def zlib_version(cdll: ctypes.CDLL) -> Any:
    """zlib's ``zlibVersion()`` as the C string its ``*Init2_`` functions take (the caller
    keeps it alive as long as the stream structs that point at it)."""
    cdll.zlibVersion.restype = ctypes.c_char_p
    return ffi.new("char[]", cdll.zlibVersion())


@functools.lru_cache(maxsize=1)
def openssl() -> OpenSSL | None:
    """OpenSSL's EVP digest functions, as linked by Python's ``_hashlib``, or None."""
    try:
        import _hashlib

        crypto = ctypes.CDLL(_hashlib.__file__)
        crypto.EVP_MD_CTX_new.restype = ctypes.c_void_p
        crypto.EVP_MD_CTX_new.argtypes = []
        crypto.EVP_sha256.restype = ctypes.c_void_p
        crypto.EVP_sha256.argtypes = []
        crypto.EVP_DigestInit_ex.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        crypto.EVP_DigestFinal_ex.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        crypto.EVP_MD_CTX_free.argtypes = [ctypes.c_void_p]
        crypto.EVP_MD_CTX_free.restype = None
        sha256 = crypto.EVP_sha256()
        if not sha256:
            return None
        return OpenSSL(
            crypto,
            function_pointer(crypto, "EVP_DigestUpdate"),
            function_pointer(crypto, "EVP_DigestInit_ex"),
            function_pointer(crypto, "EVP_DigestFinal_ex"),
            sha256,
        )
    except (ImportError, OSError, AttributeError) as exc:
        log.debug("OpenSSL's digests cannot be called here: %s", exc)
        return None


_SYNC_FILE_RANGE_WRITE = 2


@functools.lru_cache(maxsize=1)
def _sync_file_range() -> Any:
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Have the kernel start writing ``length`` bytes of ``fd`` from ``offset`` to the disk,
    without waiting for them (``sync_file_range(SYNC_FILE_RANGE_WRITE)``), so that a later
    fsync finds less to do; only a hint: where the call is missing or fails, nothing happens.
    It makes nothing durable: the fsync still does that."""
    function = _sync_file_range()
    if function is not None:
        function(fd, offset, length, _SYNC_FILE_RANGE_WRITE)
