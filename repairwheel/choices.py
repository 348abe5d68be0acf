"""The fixed sets of values two options take, kept apart from the code that acts on them so
that the command line can offer them without importing it (a command's first step, the early
inflate, waits for the parser)."""

PATCHERS = ("builtin", "patchelf", "lief-patchelf", "none")
"""The ELF patchers ``--patcher`` chooses from (:func:`.patch.get_patcher`)."""

STRIP_LEVELS = ("all", "debug", "unneeded")
"""What ``--strip-level`` may strip: everything ``strip -s`` does, debug information only, or
what relocations do not need."""
