"""Fixtures for the C backend's tests: the library (skipped, with the reason, where it is unavailable) and
each instruction-set variant this CPU can run."""

from __future__ import annotations

import os

import pytest

from cnnkit.backends.c import library
from cnnkit.errors import BackendError


def variant_names() -> list[str]:
    """The variants to test: each one this CPU runs, or only the library CNNKIT_C_LIBRARY names."""
    if os.environ.get(library.LIBRARY_ENV):
        return ["loaded"]
    try:
        return library.runnable_variants() or ["loaded"]
    except BackendError:
        return ["loaded"]


@pytest.fixture(scope="session")
def lib() -> library.Library:
    reason = library.unavailable()
    if reason is not None:
        pytest.skip(f"the C backend is not available: {reason}")
    return library.load()


@pytest.fixture(params=variant_names())
def variant(request, lib) -> library.Library:
    """Each runnable variant's library (a variant already loaded shares its state, thread pool included)."""
    if request.param == "loaded":
        return lib
    return library.Library(library.variant_path(request.param))


@pytest.fixture(autouse=True)
def keep_thread_count():
    """Tests change the thread count; put it back."""
    count = library.get_num_threads()
    yield
    library.set_num_threads(count)
