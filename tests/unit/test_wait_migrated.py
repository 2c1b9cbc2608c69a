"""The seams of wait mode, with no database and no sleeping: the waiting loop with an injected
clock, listener and jitter; what counts as missing (squashed migrations included); the words
for a refused privilege; and the new settings."""

from __future__ import annotations

import itertools

import pytest

from entrypoint import config
from entrypoint.audit.retention import Retention
from entrypoint.engine.ddl import missing_privilege, privilege_fix
from entrypoint.engine.graph import Needed
from entrypoint.errors import ConfigError
from entrypoint.pipeline.migrated import NotInTime, Waiting, wait_until_present


class Clock:
    """A clock that only moves when the listener waits."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def listen(self, seconds: float) -> None:
        self.waits.append(round(seconds, 4))
        self.now += seconds


def test_the_loop_backs_off_from_50_ms_to_one_second_and_returns_when_nothing_is_missing() -> None:
    """Each question that finds something missing is followed by a wait of the back-off
    (jitter at its top here): 0.05 s doubling up to 1 s; the seconds waited are returned once
    nothing is missing."""
    clock = Clock()
    answers = [[("a", "1")]] * 7 + [[]]
    waited = wait_until_present(
        lambda: answers.pop(0), clock.listen, 1000.0, clock=clock, jitter=lambda _lo, hi: hi
    )
    assert clock.waits == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert waited == pytest.approx(sum(clock.waits))


def test_a_notice_ends_a_wait_early_and_the_next_question_comes_at_once() -> None:
    """The listener returning early (a notice) leads straight to the next question."""
    asked: list[float] = []
    clock = Clock()

    def missing() -> list[tuple[str, str]]:
        asked.append(clock.now)
        return [] if len(asked) == 3 else [("a", "1")]

    def notice(seconds: float) -> None:
        clock.waits.append(seconds)
        clock.now += 0.001  # the holder's NOTIFY came a millisecond later

    wait_until_present(missing, notice, 1000.0, clock=clock, jitter=lambda _lo, hi: hi)
    assert [round(b - a, 4) for a, b in itertools.pairwise(asked)] == [0.001, 0.001]


def test_the_deadline_raises_with_what_is_still_missing_and_never_waits_past_it() -> None:
    """Past the deadline the loop raises NotInTime with the last answer; the last wait is cut to
    the time left, and a report goes out at once and then about every five seconds."""
    clock = Clock()
    reports: list[Waiting] = []
    with pytest.raises(NotInTime) as raised:
        wait_until_present(
            lambda: [("a", "1"), ("b", "2")],
            clock.listen,
            clock.now + 12.0,
            clock=clock,
            jitter=lambda _lo, hi: hi,
            on_wait=reports.append,
        )
    assert raised.value.missing == [("a", "1"), ("b", "2")]
    assert raised.value.waited == pytest.approx(12.0)
    assert sum(clock.waits) == pytest.approx(12.0)
    assert reports[0].waited == 0
    gaps = [b.waited - a.waited for a, b in itertools.pairwise(reports)]
    assert len(gaps) == 2
    assert all(5.0 <= gap < 6.0 for gap in gaps), gaps


def test_a_squashed_migration_is_there_once_everything_it_replaces_is_recorded() -> None:
    """A needed squash counts as there when every migration it replaces is recorded (Django
    records those, not the squash, when it applies it); a plain one when its own row is."""
    needed = Needed(
        (("shop", "0001_squashed_0003"), ("shop", "0004_more")),
        {("shop", "0001_squashed_0003"): (("shop", "0001"), ("shop", "0002"), ("shop", "0003"))},
    )
    assert needed.missing(set()) == [("shop", "0001_squashed_0003"), ("shop", "0004_more")]
    assert needed.missing({("shop", "0001"), ("shop", "0002")}) == [
        ("shop", "0001_squashed_0003"),
        ("shop", "0004_more"),
    ]
    recorded = {("shop", "0001"), ("shop", "0002"), ("shop", "0003"), ("shop", "0004_more")}
    assert needed.missing(recorded) == []


class FakePgError(Exception):
    """An exception shaped like psycopg's, with its SQLSTATE."""

    def __init__(self, text: str, sqlstate: str) -> None:
        super().__init__(text)
        self.sqlstate = sqlstate


def test_a_refused_privilege_is_named_in_words() -> None:
    """PostgreSQL's insufficient_privilege becomes the privilege in words, through Django's
    wrapper (the cause); other errors are not privilege errors."""
    wrapper = RuntimeError("wrapped")
    wrapper.__cause__ = FakePgError("permission denied for schema public\nLINE 1: ...", "42501")
    assert missing_privilege(wrapper) == "CREATE on schema public"
    assert missing_privilege(FakePgError("must be owner of table shop_item", "42501")) == (
        "ownership of table shop_item"
    )
    assert missing_privilege(FakePgError('relation "x" already exists', "42P07")) is None
    assert privilege_fix("CREATE on schema public", "app") == (
        "the role 'app' lacks CREATE on schema public, which only the schema owner should have: "
        "run migrate with the owner's role (the migration Job), and set ENTRYPOINT_MIGRATE=wait "
        "on the containers that run as 'app'"
    )


def test_the_new_settings_parse_and_refuse_bad_values_in_one_line() -> None:
    """ENTRYPOINT_MIGRATE, ENTRYPOINT_MIGRATE_WAIT_TIMEOUT and ENTRYPOINT_HISTORY_KEEP: the
    defaults, the accepted forms, and the one-line refusal of anything else."""
    default = config.load({}, {})
    assert (default.migrate_mode, default.migrate_wait_timeout) == ("auto", 900.0)
    assert default.history_keep == Retention(runs=1000)
    loaded = config.load(
        {"ENTRYPOINT_MIGRATE_WAIT_TIMEOUT": "2m", "ENTRYPOINT_HISTORY_KEEP": "30d"},
        {"migrate_mode": "wait"},
    )
    assert (loaded.migrate_mode, loaded.migrate_wait_timeout) == ("wait", 120.0)
    assert loaded.history_keep == Retention(seconds=30 * 86400.0)
    assert config.load({"ENTRYPOINT_HISTORY_KEEP": "off"}, {}).history_keep.keeps_all
    with pytest.raises(ConfigError) as raised:
        config.load({"ENTRYPOINT_HISTORY_KEEP": "0"}, {})
    assert str(raised.value) == (
        "ENTRYPOINT_HISTORY_KEEP='0' is not a retention; use a number of runs such as 1000, a "
        "duration such as 30d or 12h, or off to keep every run"
    )
    with pytest.raises(ConfigError) as raised:
        config.load({}, {"migrate_mode": "sometimes"})
    assert str(raised.value) == (
        "--migrate='sometimes' is not accepted; use one of auto, wait, off"
    )
