"""The docs cannot rot: every command in README.md and docs/*.md is checked.

* ``microtune`` commands are parsed by the real command line (unknown
  commands, options or values fail), and every subcommand's ``--help`` runs;
* other programs must exist in the environment (``feast``, ``mlflow``,
  ``prefect``, ``curl``...), and scripts named in the docs must exist;
* the ``curl`` examples run against a live scorer in ``tests/test_serving.py``
  (``test_docs_curl_examples_work_as_printed``).
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer._click.exceptions import UsageError
from typer.testing import CliRunner

from cli.main import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BUILTINS = {"source", "export", "cd", "for", "do", "done", "echo", "set", "unset", "kill"}


def shell_commands(path: Path) -> list[str]:
    """Commands of the ```bash blocks of a markdown file, continuation lines joined."""
    text = path.read_text()
    out: list[str] = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        pending = ""
        for line in joined.splitlines():
            if not pending and (not line.strip() or line.strip().startswith("#")):
                continue
            pending = f"{pending}\n{line}" if pending else line.strip()
            try:  # a quoted argument may span lines: wait for its closing quote
                shlex.split(pending, comments=True)
            except ValueError:
                continue
            out.append(pending)
            pending = ""
        assert not pending, f"{path}: unclosed quote in `{pending}`"
    return out


def _words(command: str) -> list[str]:
    words = shlex.split(command, comments=True)
    while words and "=" in words[0] and not words[0].startswith("-"):
        words = words[1:]  # leading VAR=value assignments
    return words


ALL = [(p.relative_to(ROOT).as_posix(), c) for p in DOCS for c in shell_commands(p)]


def test_the_docs_have_commands() -> None:
    names = {Path(p).name for p, _ in ALL}
    assert {"README.md", "api.md", "deployments.md", "features.md", "models.md"} <= names
    assert sum(c.startswith("microtune") for _, c in ALL) >= 10


def _parse(args: list[str]) -> None:
    """Resolve ``args`` through the real command tree without running anything."""
    command: Any = typer.main.get_command(app)
    ctx = command.make_context("microtune", list(args), resilient_parsing=False)
    while hasattr(command, "resolve_command"):  # a group: find the subcommand
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None, f"unknown command {name}"
        command = sub
        ctx = command.make_context(name, rest, parent=ctx, resilient_parsing=False)


@pytest.mark.parametrize(
    ("doc", "command"),
    [(p, c) for p, c in ALL if _words(c) and _words(c)[0] == "microtune"],
)
def test_microtune_commands_in_the_docs_parse(doc: str, command: str) -> None:
    args = _words(command)[1:]
    if "--help" in args:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        return
    try:
        _parse(args)
    except UsageError as exc:
        pytest.fail(f"{doc}: `{command}` does not parse: {exc.format_message()}")


@pytest.mark.parametrize(
    ("doc", "command"),
    [(p, c) for p, c in ALL if _words(c) and _words(c)[0] not in ("microtune", "curl")],
)
def test_other_programs_in_the_docs_exist(doc: str, command: str) -> None:
    words = _words(command)
    prog = words[0]
    if prog in SHELL_BUILTINS or prog.startswith("$"):
        return
    if prog in ("python", "python3") and len(words) > 1 and words[1].endswith(".py"):
        assert (ROOT / words[1]).exists(), f"{doc}: {words[1]} does not exist"
        return
    found = shutil.which(prog) or shutil.which(prog, path=str(Path(sys.executable).parent))
    assert found, f"{doc}: `{prog}` is not installed (in `{command}`)"


def test_every_subcommand_has_help() -> None:
    runner = CliRunner()
    command: Any = typer.main.get_command(app)
    names: list[list[str]] = []
    for name, sub in command.commands.items():
        names.append([name])
        names += [[name, n] for n in getattr(sub, "commands", {})]
    assert len(names) >= 12
    for args in names:
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, (args, result.output)


def test_a_wrong_command_in_the_docs_would_fail() -> None:
    """The parse check itself: a typo'd option or command is caught."""
    with pytest.raises(UsageError):
        _parse(["train", "--sed", "1"])
    with pytest.raises(UsageError):
        _parse(["features", "biuld"])
    _parse(["features", "build", "--hours", "24"])
