# The cffi-compiled C core (csrc/elfcore.h declares it); repairwheel.elf is its typed view.
from typing import Any

ffi: Any
lib: Any
