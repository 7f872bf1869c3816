"""Suite-wide settings: compiled kernels are cached in a directory of this test session, so the
suite neither reads nor fills the user's cache (hypothesis makes new kernels on every run)."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _kernel_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("GRAPHC_CACHE_DIR", str(tmp_path_factory.mktemp("kernel-cache")))
    yield
    mp.undo()
