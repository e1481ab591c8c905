"""``--help`` of every entry point lists every config key of the OPTIONS table, with its default and meaning."""
from __future__ import annotations

import pytest

import clean_labels
from utils.training.config import ACTO, ALL_SCOPES, OPTIONS, STAGE1, STAGE2, build_arg_parser, parse_config, yaml_text


def flat(text: str) -> str:
    """``text`` with every run of white space made one space (the help wraps lines)."""
    return " ".join(text.split())


@pytest.mark.parametrize("scope", [STAGE1, STAGE2, ACTO])
def test_help_lists_every_key_of_the_scope_with_default_and_meaning(scope):
    text = build_arg_parser(f"{scope}.py", scope).format_help()
    for opt in OPTIONS:
        entry = f"\n  {opt.name} = {yaml_text(opt.default)}\n"
        if scope in opt.scopes:
            assert entry in text, opt.name
            assert flat(opt.help) in flat(text.split(entry, 1)[1]), opt.name
        else:
            assert entry not in text, f"{opt.name} is not a key of {scope}"


def test_help_of_the_real_command_line(capsys):
    with pytest.raises(SystemExit) as stop:
        parse_config(["--help"], prog="stage_2.py", scope=STAGE2)
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "\n  bmm = global\n" in out and "one of global, class" in out
    assert "\n  noise_ratio = 0.4\n" in out and "a number >= 0 and <= 1" in out
    assert "\n  num_workers = 4\n" in out and "an integer >= 0 or auto" in out


def test_help_of_stage_2_class_shows_the_key_it_fixes(capsys):
    import stage_2_class
    with pytest.raises(SystemExit):
        stage_2_class.main(["--help"])
    out = capsys.readouterr().out
    assert "\n  bmm = class  [fixed by this script]\n" in out and "\n  bmm = global" not in out


def test_clean_labels_help_lists_every_key_and_the_stages_that_take_it():
    text = clean_labels.build_parser().format_help()
    for opt in OPTIONS:
        only = "" if opt.scopes == ALL_SCOPES else f"  [{', '.join(sorted(opt.scopes))} only]"
        assert f"\n  {opt.name} = {yaml_text(opt.default)}{only}\n" in text, opt.name
    assert "\n  frozen = false  [stage1 only]\n" in text


def test_yaml_text_writes_defaults_as_a_config_file_does():
    assert [yaml_text(v) for v in (None, True, False, 0.0001, [0.5, 0.75], "digits")] == \
        ["null", "true", "false", "0.0001", "[0.5, 0.75]", "digits"]
