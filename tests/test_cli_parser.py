"""The command line at the parser level: whole options only, the subcommand's
own error with the closest option, and the lab extra named in one line.

Nothing here compiles or runs an experiment: every case stops in the parser.
"""

from __future__ import annotations

import argparse
import os

import pytest

from ftrl_adam import cli
from ftrl_adam import lab
from ftrl_adam.lab.cli import _common


def _error(capsys, argv):
  with pytest.raises(SystemExit) as e:
    cli.main(argv)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert "Traceback" not in err
  return err.splitlines()


@pytest.mark.parametrize("argv, line", [
    (["regret", "--seed", "3"],
     "ftrl-adam regret: error: unrecognized arguments: --seed 3; did you "
     "mean --seeds?"),
    (["regret", "--seeeds", "3"],
     "ftrl-adam regret: error: unrecognized arguments: --seeeds 3; did you "
     "mean --seeds?"),
    (["regret", "--bogus"],
     "ftrl-adam regret: error: unrecognized arguments: --bogus"),
    (["study", "--seeeds=3", "--lr", "0.1"],
     "ftrl-adam study: error: unrecognized arguments: --seeeds=3 --lr 0.1; "
     "did you mean --seeds (for --seeeds)?; did you mean --lrs (for --lr)?"),
    (["demo", "--stpes", "3"],
     "ftrl-adam demo: error: unrecognized arguments: --stpes 3; did you "
     "mean --steps?"),
    (["bench", "step", "--repeat", "3"],
     "ftrl-adam bench step: error: unrecognized arguments: --repeat 3; did "
     "you mean --repeats?"),
    (["regrte"],
     "ftrl-adam: error: argument SUBCOMMAND: invalid choice: 'regrte' (choose "
     "from 'regret', 'study', 'bench', 'demo'); did you mean 'regret'?"),
])
def test_unknown_options_are_the_subcommands_error_with_the_closest_option(
    argv, line, capsys):
  lines = _error(capsys, argv)
  assert lines[-1] == line
  # The usage printed is the one of the parser that was given the option,
  # at most two lines: a long one (regret's, study's, a benchmark's dozens
  # of options) is one line saying where they are listed.
  prog = line.split(": error:")[0]
  assert lines[0].startswith(f"usage: {prog} ")
  assert len(lines) <= 3, lines
  if prog in ("ftrl-adam regret", "ftrl-adam study", "ftrl-adam bench step"):
    assert lines[0] == (f"usage: {prog} [options]   (`{prog} --help` lists "
                        "them)"), lines


@pytest.mark.parametrize("argv, lists", [
    ([], ["regret", "study", "bench", "demo"]),
    (["bench"], ["step", "grid", "study"])])
def test_a_command_without_its_subcommand_lists_them_and_exits_0(
    capsys, argv, lists):
  # `ftrl-adam` and `ftrl-adam bench` alone: their help, status 0, alike
  # (`bench` alone was argparse's "arguments are required" error, status 2).
  assert cli.main(argv) == 0
  out = capsys.readouterr()
  assert out.out.startswith("usage: ftrl-adam") and not out.err
  listed = [line.split()[0] for line in out.out.splitlines()
            if line.startswith("    ") and line.split()]
  assert [name for name in lists if name in listed] == lists, out.out


def test_no_parser_takes_an_abbreviation():
  parser = cli.build_parser()
  subs = [a for a in parser._actions  # pylint: disable=protected-access
          if isinstance(a, argparse._SubParsersAction)]  # pylint: disable=protected-access
  parsers = [parser, *subs[0].choices.values()]
  assert {type(p) for p in parsers} == {_common.Parser}
  assert len(parsers) == 5 and not any(p.allow_abbrev for p in parsers)
  # The benchmarks' parsers too (a subclass that fills itself in when used).
  (names,) = [a for a in subs[0].choices["bench"]._actions  # pylint: disable=protected-access
              if isinstance(a, argparse._SubParsersAction)]  # pylint: disable=protected-access
  assert sorted(names.choices) == ["grid", "kernels", "step", "study"]
  assert all(isinstance(p, _common.Parser) and not p.allow_abbrev
             for p in names.choices.values())
  # A prefix of exactly one option is still refused (argparse would take it).
  assert _common.Parser(prog="x").allow_abbrev is False


def test_suggestions_come_only_from_close_options():
  p = _common.Parser(prog="x")
  p.add_argument("--seeds")
  p.add_argument("--out")
  assert p.suggestion("--seed") == "--seeds"
  assert p.suggestion("--seeds=4") == "--seeds"
  assert p.suggestion("--bogus") is None      # "--" alone matches nothing
  assert p.suggestion("seeds") is None        # a positional word


def test_without_the_lab_extra_the_lab_commands_say_which_in_one_line(
    monkeypatch, capsys):
  monkeypatch.setattr(lab, "missing_extra", lambda: ["flax", "matplotlib"])
  expected = ('needs the lab extra (missing: flax, matplotlib): pip install '
              '"ftrl-adam[lab]" (in a checkout: pip install ".[lab]")')
  for command in ("regret", "study", "bench"):
    assert cli.main([command, "--seeds", "3"]) == 2
    err = capsys.readouterr().err
    assert err == f"ftrl-adam {command}: error: this command {expected}\n"
  with pytest.raises(ImportError, match=r"^ftrl_adam.studies needs the lab "
                     r"extra \(missing: flax, matplotlib\): pip install"):
    lab.require_extra("ftrl_adam.studies")
  # The top-level help still works and says which subcommands need it.
  with pytest.raises(SystemExit) as e:
    cli.main(["--help"])
  assert e.value.code == 0
  out = " ".join(capsys.readouterr().out.split())
  assert 'needs the lab extra: pip install "ftrl-adam[lab]"' in out


def test_with_the_extra_nothing_is_missing():
  assert lab.missing_extra() == []
  assert lab.extra_message("x") is None


def test_a_bench_out_that_cannot_hold_the_json_is_refused_before_measuring(
    tmp_path, capsys):
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  locked = tmp_path / "locked"
  locked.mkdir(mode=0o500)
  cases = {str(a_file): "is a file, not a folder",
           str(a_file / "sub"): "cannot write in",
           str(locked / "sub") if os.geteuid() else "/proc/no/such": "cannot write in"}
  for out, why in cases.items():
    with pytest.raises(SystemExit) as e:   # argparse: before any measuring
      cli.main(["bench", "step", "--sizes", "10", "--out", out])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ftrl-adam bench step: error: argument --out: ")
    assert why in err and out in err, err
  made = tmp_path / "new" / "folder"
  with pytest.raises(SystemExit):     # a good --out is made at once
    cli.main(["bench", "step", "--out", str(made), "--bogus"])
  assert made.is_dir()


def test_regret_and_study_take_redraw():
  for command in ("regret", "study"):
    parser = cli.build_parser(only=command)
    assert parser.parse_args([command]).redraw is False
    assert parser.parse_args([command, "--redraw"]).redraw is True
