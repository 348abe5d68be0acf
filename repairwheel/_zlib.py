"""The deflate implementation: zlib-ng where it is installed (same format, 2-3x faster), else zlib.

Both produce valid streams; their compressed bytes differ, so reproducible output holds for
one installation, as it always did across zlib versions.
"""

try:
    from zlib_ng import zlib_ng as zlib
except ImportError:  # pragma: no cover - platforms without zlib-ng wheels
    import zlib  # type: ignore[no-redef]

# zlib-ng's type hints do not say its error is an exception class; it is (a zlib.error alike).
ZlibError: type[Exception] = zlib.error  # type: ignore[assignment]

__all__ = ["ZlibError", "zlib"]
