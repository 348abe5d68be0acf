"""Find the shared libraries an ELF file needs, in the order the dynamic loader looks for them.

:func:`resolve` walks one root's DT_NEEDED breadth first and returns a :class:`DependencyTree`;
:func:`lddtree` does it for a file of this machine.  The parts:

- ``config.py``: the search paths of this machine or a sysroot (:func:`loader_config`);
- ``fs.py``: where candidate files are read from (:class:`HostFilesystem`, a wheel's members
  over it: :class:`WheelFilesystem`), and why a candidate cannot be loaded;
- ``rules.py``: each loader family's rules (glibc, musl, Android's bionic), one class each;
- ``walk.py``: the walk, and the memory of what is loaded;
- ``tree.py``: the results, and their JSON and text.

We follow ld.so where auditwheel's lddtree does not (its verdicts are compared with ours):

- LD_LIBRARY_PATH and AUDITWHEEL_LD_LIBRARY_PATH come before DT_RUNPATH (auditwheel: after, #737).
- DT_RPATH is inherited from every loader in the chain (auditwheel: only the root's), and the
  root's DT_RUNPATH serves its direct dependencies only (auditwheel: every dependency).
- $LIB and $PLATFORM are expanded (auditwheel leaves them, so such entries never match).
- $ORIGIN is the directory the object was found in, before symlinks are resolved
  (auditwheel: the directory of its realpath).
- Dependencies resolve breadth first (auditwheel: depth first), so when two objects need one
  name, the one nearer the root decides where it is looked up.
- A DT_NEEDED name with a slash is opened as a path (auditwheel joins it to every search
  directory).  An absolute one is opened as written (under the sysroot): it is found only where
  that very file exists.  A relative one is opened from the working directory of the program
  at run time, which no check can know: it is recorded as ``relative`` and not looked up.
- The interpreter is always loaded, so its names resolve to it without a search; its directory
  is not searched otherwise (auditwheel searches it).
- Default directories are the loader's own where it can be asked, else a superset (auditwheel:
  /lib, /lib64, /usr/lib, /usr/lib64); musl's come from its path file (``config.py``).
- A candidate is rejected as the loader rejects it: another class, byte order, machine or OS
  ABI, or (ARM) the other float ABI of EABI version 5 (``rules.incompatibility``).

Where we differ from ld.so, as auditwheel does:

- /etc/ld.so.cache is not read; the ld.so.conf directories it is built from are searched in
  order (the cache can be stale, and a sysroot's cache is meant for another machine).
- glibc-hwcaps and legacy hwcap subdirectories are not searched: they depend on the CPU that
  runs the program, which is not known when a wheel is checked.
- A file of the right name that is not ELF (a linker script named libc.so), is not a valid
  ELF file, or cannot be read is passed over (ld.so stops: "invalid ELF header"; it passes
  over only unreadable ones), and recorded with the reason in ``Library.rejected``.
- Candidates of another class, byte order, machine, OS ABI or float ABI than the root are
  skipped for musl too (musl would fail to load them).
- The root is taken as the main program: an extension module is really dlopen()ed by python,
  whose own DT_RPATH would apply as well.
"""

from .config import LoaderConfig, interpreter_search_path, loader_config
from .fs import Filesystem, HostFilesystem, WheelFilesystem
from .tree import DependencyTree, Library, SearchDir, Step
from .walk import lddtree, resolve

__all__ = [
    "DependencyTree",
    "Filesystem",
    "HostFilesystem",
    "Library",
    "LoaderConfig",
    "SearchDir",
    "Step",
    "WheelFilesystem",
    "interpreter_search_path",
    "lddtree",
    "loader_config",
    "resolve",
]
