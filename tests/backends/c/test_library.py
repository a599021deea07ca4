"""Finding and loading the C library: variant choice, declarations, and saying why it is unavailable."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cnnkit.backends.c import backend_info, library
from cnnkit.cli import main
from cnnkit.errors import BackendError

CSRC = Path(library.__file__).parent / "csrc"


def exported_in_headers() -> set[str]:
    text = "\n".join(path.read_text() for path in CSRC.glob("*.h"))
    return set(re.findall(r"CNK_API\s[^;(]*?\b(cnk_\w+)\s*\(", text))


def test_every_exported_function_is_declared_once_with_its_types():
    assert exported_in_headers() == set(library.SIGNATURES)


def test_the_library_exports_exactly_the_declared_functions(lib):
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    listing = subprocess.run([nm, "-D", "--defined-only", str(lib.path)], capture_output=True, text=True,
                             check=True).stdout
    exported = {line.split()[-1] for line in listing.splitlines() if " T " in line}
    assert exported == set(library.SIGNATURES)


def test_the_best_runnable_variant_is_loaded(lib):
    if os.environ.get(library.LIBRARY_ENV):
        pytest.skip(f"{library.LIBRARY_ENV} chooses the library")
    runnable = library.runnable_variants()
    assert lib.variant == runnable[0]
    assert runnable[-1] == "portable"
    assert lib.path == library.variant_path(lib.variant)


def test_backend_info_says_the_instruction_set_and_threads(lib, capsys):
    library.set_num_threads(3)
    assert backend_info() == f"instruction set {lib.variant} ({lib.path.name}), 3 threads"
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert f"instruction set {lib.variant}" in out
    assert re.search(r"^c +available$", out, re.MULTILINE)
    assert "kernels (" in out and "conv2d" in out


def test_a_variant_can_be_forced(lib, monkeypatch):
    monkeypatch.delenv(library.LIBRARY_ENV, raising=False)
    for variant in library.runnable_variants():
        monkeypatch.setenv(library.VARIANT_ENV, variant)
        assert library._open().variant == variant
    monkeypatch.setenv(library.VARIANT_ENV, "avx1024")
    with pytest.raises(BackendError, match="CNNKIT_C_VARIANT='avx1024': this machine can run the variants"):
        library._open()


def test_a_library_that_cannot_be_loaded_is_reported(tmp_path, monkeypatch):
    not_a_library = tmp_path / "libcnnkit_fake.so"
    not_a_library.write_text("not ELF")
    monkeypatch.setenv(library.LIBRARY_ENV, str(not_a_library))
    with pytest.raises(BackendError, match=f"cannot load the C library {not_a_library}"):
        library._open()


def test_a_library_that_was_not_built_says_why(tmp_path, monkeypatch):
    monkeypatch.delenv(library.LIBRARY_ENV, raising=False)
    monkeypatch.setattr(library, "HERE", tmp_path)
    monkeypatch.setattr(library, "BUILD_STATUS", tmp_path / "c-build.json")
    with pytest.raises(BackendError, match="the C library was not built .*reinstall cnnkit"):
        library._open()
    (tmp_path / "c-build.json").write_text(json.dumps(
        {"built": [], "failed": {"portable": "CompileError: command 'gcc' failed: No such file"}}))
    with pytest.raises(BackendError, match="not built when cnnkit was installed \\(portable: CompileError: "
                                           "command 'gcc' failed"):
        library._open()


def test_an_unavailable_backend_is_listed_with_its_reason_and_numpy_keeps_working(tmp_path):
    missing = tmp_path / "missing.so"
    code = textwrap.dedent("""
        import cnnkit
        from cnnkit.cli import main
        spec = "name: t\\ninput: [2]\\nlayers:\\n  - {name: fc, type: linear, units: 3}"
        main(["backends"])
        cnnkit.build(spec).forward([[1.0, 2.0]])
        print("numpy ok")
        cnnkit.build(spec, backend="c")
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, library.LIBRARY_ENV: str(missing)})
    assert f"c      not available: cannot load the C library {missing}" in done.stdout, done.stderr
    assert "numpy ok" in done.stdout
    assert f"BackendError: backend 'c' is not available: cannot load the C library {missing}" in done.stderr


def test_status_messages(lib):
    assert lib.status_message(0) == b"no error"
    assert b"out of memory" in lib.status_message(2)
    assert lib.status_message(99) == b"unknown error"
