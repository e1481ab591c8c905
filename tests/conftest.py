"""Shared test set-up, and the two test tiers.

The fast tier, ``python -m pytest -m "not slow"``, is the inner loop: unit tests in this process only.
A test that launches an entry point or any other process (a subprocess, torchrun, ``mp.spawn``, the
headless browser), or that is long, carries ``@pytest.mark.slow`` and runs only in the full suite,
``python -m pytest`` (what .ci/run runs).  The tier keeps itself honest: while a test that is not marked
slow sets up, runs or tears down, starting a process fails it with a line naming the marker
(``_refuse_processes``).  Forked DataLoader workers are allowed: they are part of the code under test.
A test that is long gets no such refusal (load makes time a poor judge), but the end of the run names every
unmarked test whose setup and call took more than FAST_TEST_CPU_S of CPU time, a measure load barely moves.
"""
import time

LOADED = time.monotonic()  # the tier's wall time counts from here, before torch is imported

import multiprocessing.util  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

FAST_TIER_BUDGET_S = 120  # the fast tier's wall time on the 2-core development machine (issue 26)
FAST_TEST_CPU_S = 2.0  # CPU seconds (setup + call) above which an unmarked test is named as one to mark slow


class StartsAProcess(RuntimeError):
    """A test outside the slow tier tried to start a process."""


def _refuse_processes(item):
    """Patch every way of starting a new program (not os.fork) to fail, recording the attempt on ``item``.

    subprocess.Popen._execute_child is below subprocess.run/check_output/os.popen; multiprocessing's spawn
    and forkserver contexts (torch.multiprocessing.spawn) start their children through
    multiprocessing.util.spawnv_passfds; os.system/posix_spawn/exec* start programs directly.  The attempt
    is recorded as well as raised, so a test that catches the exception still fails (pytest_runtest_makereport).
    """
    def refuse(what):
        def refused(*args, **kwargs):
            message = (f"{item.nodeid} starts a process ({what}) but is not marked @pytest.mark.slow: "
                       "mark it slow (the fast tier, -m 'not slow', runs in this process only)")
            item.stash.setdefault(_ATTEMPTS, []).append(message)
            raise StartsAProcess(message)
        return refused

    mp = pytest.MonkeyPatch()
    mp.setattr(subprocess.Popen, "_execute_child", refuse("subprocess"))
    mp.setattr(multiprocessing.util, "spawnv_passfds", refuse("multiprocessing spawn"))
    for name in ("system", "posix_spawn", "posix_spawnp", "execv", "execve", "execvp", "execvpe"):
        if hasattr(os, name):
            mp.setattr(os, name, refuse(f"os.{name}"))
    return mp


_ATTEMPTS = pytest.StashKey[list]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _in_process_only(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _in_process_only(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    return (yield from _in_process_only(item))


def _in_process_only(item):
    if item.get_closest_marker("slow") is not None:
        return (yield)
    patch = _refuse_processes(item)
    start = time.process_time()
    try:
        return (yield)
    finally:
        patch.undo()
        item.stash[_CPU_S] = item.stash.get(_CPU_S, 0.0) + time.process_time() - start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that tried to start a process fails even where it caught StartsAProcess itself."""
    report = yield
    attempts = item.stash.get(_ATTEMPTS, None)
    if attempts and not item.stash.get(_REPORTED, False):
        item.stash[_REPORTED] = True
        report.outcome = "failed"
        report.longrepr = "\n".join(dict.fromkeys(attempts))
    if report.when == "call" and _CPU_S in item.stash:  # a user property: it reaches the summary under xdist too
        report.user_properties.append(("cpu_s", item.stash[_CPU_S]))
    return report


_REPORTED = pytest.StashKey[bool]()
_CPU_S = pytest.StashKey[float]()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Name the tier that ran and its wall time; the fast tier's is set against FAST_TIER_BUDGET_S."""
    if config.option.collectonly:
        return
    elapsed = time.monotonic() - LOADED
    markexpr = config.getoption("markexpr", "")
    fast = " ".join(markexpr.split()) == "not slow"
    line = ("fast tier (-m 'not slow')" if fast else "this pytest run") + f": {elapsed:.1f} s wall"
    if fast:
        line += f" (budget {FAST_TIER_BUDGET_S} s on the 2-core development machine" + \
            (": OVER BUDGET, move long tests to the slow tier)" if elapsed > FAST_TIER_BUDGET_S else ")")
    terminalreporter.write_line(line)
    long = sorted(((dict(r.user_properties).get("cpu_s", 0.0), r.nodeid) for reports in terminalreporter.stats.values()
                   for r in reports if getattr(r, "when", None) == "call"), reverse=True)
    long = [(cpu, nodeid) for cpu, nodeid in long if cpu > FAST_TEST_CPU_S]
    if long:
        terminalreporter.write_line(f"not marked slow, yet above {FAST_TEST_CPU_S} s of CPU (setup + call): "
                                    "mark them @pytest.mark.slow", yellow=True)
        for cpu, nodeid in long:
            terminalreporter.write_line(f"  {cpu:.1f} s CPU  {nodeid}")


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
