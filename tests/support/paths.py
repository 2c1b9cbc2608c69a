"""Where the suite's files are: the repository, the tests, the test projects."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
PROJECTS = TESTS / "projects"
TESTPROJ = PROJECTS / "testproj"
PHASEPROJ = PROJECTS / "phaseproj"
SQUASHPROJ = PROJECTS / "squashproj"
EXAMPLE = REPO / "docker" / "example"
