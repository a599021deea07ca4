"""Builds the C backend: plain shared libraries (no Python C-API) that cnnkit loads with ctypes.

The same sources (src/cnnkit/backends/c/csrc) are compiled once per instruction-set variant into
cnnkit/backends/c/libcnnkit_<variant>.so; at run time cnnkit.backends.c.library loads the best one the CPU
supports. Both `pip install .` and `pip install -e .` build them (an editable install copies them next to
library.py in the source tree). A variant that fails to compile (no gcc, an old compiler) is skipped with
a warning and the reason is written to c-build.json, which `cnnkit backends` reports: the install itself
never fails because of the C backend, and everything else runs on NumPy.
"""

from __future__ import annotations

import json
import os
import platform
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PACKAGE = "cnnkit.backends.c"
CSRC = "src/cnnkit/backends/c/csrc"
STATUS_FILE = "c-build.json"

CFLAGS = ["-std=c11", "-O3", "-fPIC", "-pthread", "-fvisibility=hidden", "-Wall", "-Wextra"]
EXTRA_FLAGS_ENV = "CNNKIT_C_EXTRA_CFLAGS"
"""Flags added to every compile and link (scripts/sanitize.sh adds the sanitizers and -O1 -g)."""
X86_VARIANTS = {
    "avx512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mfma", "-mavx2", "-mprefer-vector-width=512"],
    "avx2": ["-mavx2", "-mfma"],
}


def variants() -> dict[str, list[str]]:
    """Instruction-set flags by variant name, best first; 'portable' uses the compiler's baseline."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return {**(X86_VARIANTS if x86 else {}), "portable": []}


class CLibrary(Extension):
    """One variant of the C library; `flags` selects its instruction set."""

    def __init__(self, variant: str, flags: list[str]) -> None:
        super().__init__(f"{PACKAGE}.libcnnkit_{variant}", sources=sorted(glob(f"{CSRC}/*.c")),
                         depends=sorted(glob(f"{CSRC}/*.h")), optional=True)
        self.variant = variant
        self.flags = flags


class BuildCLibraries(build_ext):
    """Compiles and links each CLibrary as a plain .so; a failure is recorded, warned about and skipped."""

    def run(self) -> None:
        self.failures: dict[str, str] = {}
        super().run()
        self._write_status()

    def get_ext_filename(self, fullname: str) -> str:
        return os.path.join(*fullname.split(".")) + ".so"

    def build_extension(self, ext: CLibrary) -> None:
        try:
            extra = os.environ.get(EXTRA_FLAGS_ENV, "").split()
            objects = self.compiler.compile(ext.sources, os.path.join(self.build_temp, ext.variant),
                                            extra_postargs=CFLAGS + ext.flags + extra, depends=ext.depends)
            self.compiler.link_shared_object(objects, self.get_ext_fullpath(ext.name),
                                             extra_postargs=["-pthread", *extra, "-lm"])
        except Exception as error:  # any compiler or platform failure: keep the install going
            self.failures[ext.variant] = f"{type(error).__name__}: {' '.join(str(error).split())}"
            self.warn(f"cnnkit: the {ext.variant} variant of the C backend was not built "
                      f"({self.failures[ext.variant]}); cnnkit still works on NumPy")

    def _write_status(self) -> None:
        """c-build.json next to the libraries: which variants were built and why the others were not."""
        status = json.dumps({"built": [e.variant for e in self.extensions if e.variant not in self.failures],
                             "failed": self.failures}, indent=1)
        folders = [os.path.join(self.build_lib, *PACKAGE.split("."))]
        if self.inplace:  # editable installs: the package is the source folder
            folders.append(self.get_finalized_command("build_py").get_package_dir(PACKAGE))
        for folder in folders:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, STATUS_FILE), "w") as file:
                file.write(status + "\n")


setup(ext_modules=[CLibrary(name, flags) for name, flags in variants().items()],
      cmdclass={"build_ext": BuildCLibraries})
