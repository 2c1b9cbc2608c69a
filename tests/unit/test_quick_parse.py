"""The command lines of a container's start are read without argparse, and read exactly as the
parser reads them; anything else is left to the parser."""

from __future__ import annotations

import pytest

from entrypoint.cli import quick_parse
from entrypoint.cli.parser import flags_of, parse


@pytest.mark.parametrize(
    "argv",
    [
        ["migrate"],
        ["sidecar"],
        ["wait"],
        ["run", "--", "gunicorn", "mysite.wsgi", "--bind", "0.0.0.0:8000"],
        ["run", "--", "--help"],
        ["run", "--", "sh", "-c", "exec app --settings x"],
    ],
)
def test_a_start_command_line_reads_as_the_parser_reads_it(argv: list[str]) -> None:
    """Same command, same program and arguments to exec (after the ``--``), and no flag: the
    variables alone configure such a start, as they do through the parser."""
    quick = quick_parse(argv)
    assert quick is not None
    parsed = parse(argv)
    assert quick.command == parsed.command
    if parsed.command == "run":
        # What the pipeline execs: the arguments after a leading "--".
        def program(argv: list[str]) -> list[str]:
            return argv[1:] if argv[:1] == ["--"] else argv

        assert program(quick.argv) == program(list(parsed.argv)) == argv[2:]
    assert all(value is None for value in flags_of(parsed).values())


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["migrate", "--lock-timeout", "5"],
        ["--settings", "mysite.settings", "migrate"],
        ["run", "gunicorn"],
        ["run", "--"],
        ["plan"],
        ["--help"],
    ],
)
def test_anything_else_is_left_to_the_parser(argv: list[str]) -> None:
    """Flags, other commands and ``run`` without ``--`` go through argparse."""
    assert quick_parse(argv) is None
