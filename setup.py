"""Build of the C virtual machine extension, fastad.backends._vm.

The extension is optional: without a C compiler (or with FASTAD_NO_EXT=1)
``pip install .`` still succeeds and fastad runs on its other backends.

Build-time switches (environment variables):
  FASTAD_NO_EXT=1     skip the extension
  FASTAD_DEBUG_VM=1   bounds assertions on every instruction of the VM
  FASTAD_SANITIZE=1   AddressSanitizer + UndefinedBehaviorSanitizer (implies
                      FASTAD_DEBUG_VM); run Python with
                      LD_PRELOAD=$(gcc -print-file-name=libasan.so)
"""
import os
import shutil
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
OPCODES_H = os.path.join("csrc", "opcodes.h")


def flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


class OptionalBuildExt(build_ext):
    """A failed compile is a warning: the pure-Python package still installs."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, missing headers, ...
            self._warn(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._warn(exc)

    @staticmethod
    def _warn(exc):
        sys.stderr.write(f"WARNING: fastad's C extension was not built ({exc}); "
                         "fastad will use its fallback backends.\n")


class BuildPyWithOpcodes(build_py):
    """Ship csrc/opcodes.h inside the package: vm_header.py reads the opcode table
    from it at run time (one source of truth for C and Python)."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "fastad", "backends", "opcodes.h")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(HERE, OPCODES_H), target)


def extensions():
    if flag("FASTAD_NO_EXT"):
        return []
    try:
        import numpy
        from Cython.Build import cythonize
    except ImportError as exc:
        sys.stderr.write(f"WARNING: building without fastad's C extension ({exc}).\n")
        return []
    macros = [("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")]
    # Portable (no -march=native); -ffp-contract=off keeps results bitwise
    # equal to NumPy's separately rounded operations.
    compile_args = ["-O3", "-fno-strict-aliasing", "-ffp-contract=off"]
    link_args = []
    if flag("FASTAD_DEBUG_VM") or flag("FASTAD_SANITIZE"):
        macros.append(("FASTAD_DEBUG_VM", "1"))
    if flag("FASTAD_SANITIZE"):
        sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
        compile_args += sanitize
        link_args += sanitize
    if sys.platform == "win32":
        compile_args = ["/O2"]
    ext = Extension(
        "fastad.backends._vm",
        sources=["fastad/backends/_vm.pyx", "csrc/vm.c", "csrc/kernels.c", "csrc/fused.c",
                 "csrc/interrupt.c", "csrc/tables.c", "csrc/validate.c", "csrc/pool.c",
                 "csrc/batch.c", "csrc/loop.c", "csrc/jit.c", "csrc/vecmath.c", "csrc/small_matmul.c"],
        include_dirs=["csrc", numpy.get_include()],
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    # the C hot path of tracing (fastad/core/_tracing.pyx): optional as the VM is
    tracing = Extension("fastad.core._tracing", sources=["fastad/core/_tracing.pyx"],
                        include_dirs=[numpy.get_include()], define_macros=macros,
                        extra_compile_args=compile_args, extra_link_args=link_args)
    try:
        return cythonize([ext, tracing], language_level=3, quiet=True)
    except Exception as exc:  # a broken Cython must not break the install either
        sys.stderr.write(f"WARNING: fastad's C extension could not be generated ({exc}).\n")
        return []


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithOpcodes},
)
