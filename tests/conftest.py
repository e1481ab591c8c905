"""Shared test set-up."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One intra-op thread: tiny models gain nothing from more, and on a busy 2-core machine OpenMP
    spinning makes them several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium (tests/headless_browser.py) with a fresh profile.  Skipped with the reason where
    chromium is not installed, except in CI (CI=true), where .ci/run installs it and its absence fails."""
    import os

    from headless_browser import Browser, find_chromium

    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but chromium is not installed (.ci/run installs it: apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium): the review page's browser tests need it")
    b = Browser(binary, str(tmp_path / "chromium-profile"))
    try:
        yield b
    finally:
        b.close()
