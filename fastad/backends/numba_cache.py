"""Numba kernels cached on disk, and fork safety while they compile.

A generated module is written once into ``$FASTAD_CACHE_DIR/numba``
(default ``~/.cache/fastad/numba``) under the hash of its source and
compiled with ``cache=True``, so a tape compiles once per machine, whichever
process asks first.  Where that directory cannot be created or written,
kernels are compiled in memory, with one warning naming the directory.

Fork safety: a process forked while another thread compiles would inherit
Numba's compiler lock (and this module's) held by a thread that does not
exist in the child, and hang on its first compile.  So a fork waits for a
running compile (``os.register_at_fork``: both locks are taken before the
fork and released after it, in parent and child alike), ``backend="auto"``'s
background tier-up included (`fallback.Tiered`: the child forgets the
parent's unfinished tier-up and starts its own, which finds this compile's
module on disk or in `_modules`).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

from ..core.tracer import user_stacklevel

try:
    import numba
except ImportError:  # the backend registry then skips the Numba backend
    numba = None


def cache_dir() -> Path:
    root = os.environ.get("FASTAD_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "fastad")
    return Path(root) / "numba"


_modules: dict[str, ModuleType] = {}
# held while a module is written and compiled; re-entrant so that a fork from
# the thread holding it (see `_before_fork`) does not wait for itself
_lock = threading.RLock()
_unwritable: set[str] = set()  # cache directories already warned about


def _compiler_lock() -> Any:
    """Numba's global compiler lock (every Numba compile holds it), where this
    Numba keeps it: ``numba.core.compiler_lock``, an object with the
    ``acquire`` and ``release`` of the re-entrant lock inside it."""
    try:
        from numba.core.compiler_lock import global_compiler_lock
    except ImportError:
        return None
    return global_compiler_lock if hasattr(global_compiler_lock, "acquire") else None


def _before_fork() -> None:
    """Wait for a running compile and keep others from starting until the fork
    is done: fastad's lock first, then Numba's (the order a compile takes them)."""
    _lock.acquire()
    lock = _compiler_lock()
    if lock is not None:
        lock.acquire()


def _after_fork() -> None:
    """In the parent and in the child: release what `_before_fork` took (the
    child's thread is the one that took them)."""
    lock = _compiler_lock()
    if lock is not None:
        lock.release()
    _lock.release()


if numba is not None and hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork,
                        after_in_child=_after_fork)


def _key(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:24]


def _load(source: str) -> ModuleType:
    """The module of ``source``, written to the cache directory once (compiled
    in memory when the directory cannot be written).

    Concurrent processes: the file is created by an atomic link of a complete
    temporary file and never rewritten, so its timestamp (which keys Numba's
    own cache index) is stable; Numba writes its cache files atomically."""
    key = _key(source)
    with _lock:
        if key in _modules:
            return _modules[key]
        directory = cache_dir()
        try:
            path = _written(directory, key, source)
        except OSError as error:
            module = _in_memory(directory, key, source, error)
        else:
            name = f"fastad_numba_{key}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # Numba's cache locates functions by module
            spec.loader.exec_module(module)
        _modules[key] = module
        return module


def _written(directory: Path, key: str, source: str) -> Path:
    """The path of ``source``'s module in ``directory``, written if it is not there."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"fastad_{key}.py"
    if not path.exists():
        tmp = directory / f".fastad_{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(source)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race with the same content
        except OSError:  # no hard links on this file system
            if not path.exists():
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def _in_memory(directory: Path, key: str, source: str, error: OSError) -> ModuleType:
    """``source``'s module compiled without the disk cache (Numba's
    ``cache=False``): the cache directory cannot be written."""
    if str(directory) not in _unwritable:
        _unwritable.add(str(directory))
        warnings.warn(f"fastad: the Numba cache directory {directory} cannot be written "
                      f"({error.strerror or error}); compiling in memory, without the disk "
                      "cache (set FASTAD_CACHE_DIR to a writable directory to keep compiled "
                      "kernels across processes)", RuntimeWarning, stacklevel=user_stacklevel())
    name = f"fastad_numba_{key}"
    module = ModuleType(name)
    code = compile(source.replace("cache=True", "cache=False"), f"<{name}>", "exec")
    exec(code, module.__dict__)  # noqa: S102 -- source generated from a validated tape
    return module
