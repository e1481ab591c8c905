"""utils/core/shell.py: the command that continues a stopped run, as one line a shell runs with every name intact."""
from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest

from utils.core.shell import command, quote

NAMES = ["plain/path", "my images", "it's", 'say "hi"', "$HOME and `ls`", "back\\slash", "star*?[x]", "café ✓",
         "semi;colon|pipe&", "-starts-with-dash"]
CONTROL = ["two\nlines", "tab\there", "bell\x07", "cr\rlf\n"]


def test_a_word_without_control_characters_is_shlex_quoted():
    assert command(["python", "clean_labels.py", *NAMES]) == " ".join(shlex.quote(w) for w in
                                                                       ["python", "clean_labels.py", *NAMES])
    assert shlex.split(command(NAMES)) == NAMES


def test_a_control_character_stays_on_the_line_as_an_escape():
    assert quote("a\nb") == "$'a\\x0ab'" and quote("it's\n") == "$'it\\'s\\x0a'" and quote("x\\\t") == "$'x\\\\\\x09'"
    assert all("\n" not in quote(w) and "\r" not in quote(w) for w in CONTROL)


@pytest.mark.slow
@pytest.mark.parametrize("shell", ["bash", "zsh", "dash", "sh"])
def test_the_shell_gets_every_word_back(shell):
    if shutil.which(shell) is None:
        pytest.skip(f"no {shell} here")
    words = NAMES + CONTROL
    if shell in ("dash", "sh"):  # POSIX sh before 2024 has no $'...' (dash 0.5.12); bash, zsh and ksh have it
        words = NAMES
    out = subprocess.run([shell, "-c", "printf '%s\\0' " + command(words)], capture_output=True, check=True).stdout
    assert out.decode().split("\0")[:-1] == words
