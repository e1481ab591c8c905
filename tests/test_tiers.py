"""The two test tiers keep themselves honest (tests/conftest.py): outside ``@pytest.mark.slow`` a test that starts
a process fails at once with a line naming the marker, even where it catches the error; forked DataLoader
workers are allowed; the fast tier's wall time is printed against its budget.  Each case runs this project's
conftest.py in a pytest session inside this process (pytester), so the check itself starts no process."""
import os

import pytest

CONFTEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conftest.py")
REFUSED = "but is not marked @pytest.mark.slow: mark it slow"


@pytest.fixture
def session(pytester, monkeypatch):
    """Run test source under the project's conftest.py and pytest.ini markers; returns pytester's result.
    Installed plugins stay out (pytest-benchmark asks git for the project's name, in a subprocess)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    with open(CONFTEST, encoding="utf-8") as f:
        conftest = f.read()
    pytester.makeini("[pytest]\nmarkers =\n    slow: the slow tier\naddopts = --strict-markers\n")

    def run(source: str, *args: str, conftest_edit=("", "")):
        pytester.makeconftest(conftest.replace(*conftest_edit))
        pytester.makepyfile(test_inner=source)
        return pytester.runpytest_inprocess(*args)
    return run


def test_an_unmarked_test_that_starts_a_process_fails_with_one_line_naming_the_marker(session):
    result = session("""
import multiprocessing, subprocess, sys

def test_subprocess():
    subprocess.run([sys.executable, "-c", "pass"])

def test_swallowed():
    try:
        subprocess.check_output(["true"])
    except Exception:
        pass

def test_spawn():
    multiprocessing.get_context("spawn").Process(target=print).start()
""")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines([f"*test_inner.py::test_subprocess starts a process (subprocess) {REFUSED}*",
                                 f"*test_inner.py::test_swallowed starts a process (subprocess) {REFUSED}*",
                                 f"*test_inner.py::test_spawn starts a process (multiprocessing spawn) {REFUSED}*"])


def test_a_fixture_that_starts_a_process_fails_the_unmarked_test_that_uses_it(session):
    result = session("""
import os, pytest

@pytest.fixture(scope="module")
def run_once():
    os.system("true")

def test_uses_it(run_once):
    pass
""")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*test_uses_it starts a process (os.system) {REFUSED}*"])


def test_slow_tests_may_start_processes_and_unmarked_ones_may_fork_dataloader_workers(session):
    # the slow test sees Popen as it was when the module was imported (no refusal was put in its way); the fast one
    # iterates a DataLoader with a forked worker
    result = session("""
import subprocess, pytest, torch
from torch.utils.data import DataLoader

AT_IMPORT = subprocess.Popen._execute_child

@pytest.mark.slow
def test_slow():
    assert subprocess.Popen._execute_child is AT_IMPORT

def test_fast_with_a_worker():
    assert subprocess.Popen._execute_child is not AT_IMPORT
    loader = DataLoader(list(range(6)), batch_size=3, num_workers=1, multiprocessing_context="fork")
    assert [b.tolist() for b in loader] == [[0, 1, 2], [3, 4, 5]]
""")
    result.assert_outcomes(passed=2)


def test_the_fast_tier_prints_its_wall_time_against_the_budget(session):
    result = session("""
import pytest

@pytest.mark.slow
def test_slow():
    pass

def test_fast():
    pass
""", "-m", "not slow")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.re_match_lines([r"fast tier \(-m 'not slow'\): \d+\.\d s wall \(budget 120 s on the 2-core "
                                  r"development machine\)"])


def test_an_unmarked_test_above_its_cpu_allowance_is_named(session):
    result = session("""
import time, pytest

def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass

def test_long():
    burn(0.3)

@pytest.mark.slow
def test_long_and_marked():
    burn(0.3)

def test_short():
    pass
""", conftest_edit=("FAST_TEST_CPU_S = 2.0", "FAST_TEST_CPU_S = 0.2"))
    result.assert_outcomes(passed=3)
    result.stdout.re_match_lines([r"not marked slow, yet above 0.2 s of CPU \(setup \+ call\): mark them "
                                  r"@pytest.mark.slow", r"  0\.\d s CPU  test_inner.py::test_long$"])
    assert "test_long_and_marked" not in result.stdout.str() and "test_short" not in result.stdout.str()
