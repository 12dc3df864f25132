"""`loce --help` and each command's help: order of the work, readable types, choices, examples, one paragraph a line."""

import re
import shlex
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from loce_cli.cli import app, options
from loce_cli.cli.examples import EXAMPLES
from loce_cli.cli.help_format import ROOT_ORDER, readable_type, walk
from loce_cli.engine.config.names import shipped_file

runner = CliRunner()
WIDE = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}
TREE = list(walk(typer.main.get_command(app)))
LEAVES = [(path, cmd) for path, cmd in TREE if path and not getattr(cmd, "commands", None)]


def _help(path):
    r = runner.invoke(app, [*path, "--help"], env=WIDE)
    assert r.exit_code == 0, r.output
    return r.output


def test_root_lists_commands_in_the_order_of_the_work():
    text = _help(())
    panel = text[text.index("Commands"):]
    names = [m.group(1) for m in re.finditer(r"^│ (\w+)\s", panel, re.M)]
    expected = [n for n in ROOT_ORDER if n in names]
    assert names[:len(expected)] == expected
    assert names.index("data") < names.index("train") < names.index("finetune") < names.index("eval") \
        < names.index("report") < names.index("inspect") < names.index("quickstart") < names.index("doctor")


@pytest.mark.parametrize("path", [p for p, _ in TREE], ids=lambda p: " ".join(p) or "loce")
def test_help_shows_types_as_words_and_flags_without_one(path):
    text = _help(path)
    assert not re.search(r"<(bool|str|int|float|path|list\[)", text), text
    cmd = dict(TREE)[path]
    for param in cmd.params:
        if isinstance(param, typer.core.TyperOption) and param.is_flag and not param.hidden:
            row = next(line for line in text.splitlines() if re.search(rf"│[\s*]+{re.escape(param.opts[0])}\b", line))
            after = row.split(param.opts[0], 1)[1]
            assert not re.match(r"\s*(-\w\s+)?(TEXT|INTEGER|PATH|FLOAT|BOOLEAN|\[)", after), row
    assert "--help" in text and not re.search(r"--help\s+-h\s+\S+\s+Show", text.replace("Show this", "Show"))


def test_readable_type_words():
    cmd = dict(TREE)[("eval",)]
    by_name = {p.name: p for p in cmd.params}
    assert readable_type(by_name["config"]) == "PATH"
    assert readable_type(by_name["max_dets"]) == "INTEGER"
    assert readable_type(by_name["split"]) == "[all|rare|common|frequent]"
    assert readable_type(by_name["metric"]) == "[bbox|segm]"
    assert readable_type(by_name["json_out"] if "json_out" in by_name else by_name["json"]) is None


def test_choice_sets_equal_the_engine_constants():
    from loce_cli.core.frequency import GROUP_NAMES
    from loce_cli.engine.data import prep, synth_lvis
    from loce_cli.engine import evaluation as evaluate
    from loce_cli.engine.report import runs as report
    from loce_cli.engine.runtime import launch
    from loce_cli.engine.evaluation import protocols

    assert options.SPLITS == ("all",) + tuple(GROUP_NAMES[g] for g in ("r", "c", "f"))
    assert options.METRICS == evaluate.METRICS and options.EVALUATORS == evaluate.EVALUATORS
    assert options.REMOVED_EVALUATORS == evaluate.REMOVED_EVALUATORS
    assert options.PROTOCOLS == protocols.PROTOCOLS and options.REPORT_FORMATS == report.FORMATS
    assert options.LAUNCHERS == launch.LAUNCHERS and options.CHECK_IMAGES == prep.CHECK_IMAGES
    assert options.LVIS_VERSIONS == ("auto",) + prep.VERSIONS
    assert options.LIKES == tuple(synth_lvis.LIKES)
    assert typing.get_args(options.Split) == options.SPLITS


@pytest.mark.parametrize("args", [["eval", "--results", "r.json", "--ann", "a.json", "--split", "medium"],
                                  ["report", "run", "--format", "xml"],
                                  ["eval", "--results", "r.json", "--ann", "a.json", "--evaluator", "coco"]])
def test_a_value_outside_the_choices_is_a_usage_error(args):
    r = runner.invoke(app, args)
    assert r.exit_code == 2
    line, = r.stderr.strip().splitlines()  # one line, not Typer's boxed panel
    assert line.startswith("error: Invalid value for") and "is not one of" in line and "--help)" in line


def test_every_command_ends_with_examples_that_parse():
    params = {path: cmd for path, cmd in TREE}
    assert {" ".join(p) for p, _ in LEAVES} <= set(EXAMPLES)
    for key, lines in EXAMPLES.items():
        path = tuple(key.split()) if key else ()
        assert path in params, key
        for line in lines:
            words = shlex.split(line)
            assert words[0] == "loce"
            # the example's command path: the longest prefix of its words naming a command
            n = max(i for i in range(len(words)) if tuple(words[1:i + 1]) in params)
            cmd = params[tuple(words[1:n + 1])]
            opts = {o for p in cmd.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
            for w in words[n + 1:]:
                if w.startswith("--"):
                    assert w.split("=")[0] in opts, (line, w)
                elif re.match(r"^(synthetic|lvis)/", w):  # a config by name: one the package ships
                    assert shipped_file(w) is not None, (line, w)
    for path, _ in LEAVES:
        text = _help(path)
        tail = text[text.rindex("Examples:"):]
        assert EXAMPLES[" ".join(path)][0] in tail


def test_help_paragraphs_have_no_hard_line_breaks():
    for path, cmd in TREE:
        for text in [cmd.help] + [getattr(p, "help", None) for p in cmd.params]:
            if text:
                assert "\n" not in text.replace("\n\n", ""), (path, text)


def test_cli_reference_page_is_up_to_date():
    from loce_cli.cli.reference import generate

    committed = (Path(__file__).resolve().parents[2] / "docs" / "CLI.md").read_text()
    assert committed == generate(), "docs/CLI.md is stale: run `make docs-cli` and commit it"
    for path, _ in LEAVES:
        assert f"## `loce {' '.join(path)}`" in committed


def test_debug_is_accepted_after_the_subcommand(tmp_path):
    missing = str(tmp_path / "missing.json")
    base = [sys.executable, "-m", "loce_cli", "eval", "--results", missing, "--ann", missing]
    plain = subprocess.run(base, capture_output=True, text=True, timeout=120)
    debug = subprocess.run(base + ["--debug"], capture_output=True, text=True, timeout=120)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines()[-1].startswith("error: ")
    assert debug.returncode == 1 and "Traceback" in debug.stderr
