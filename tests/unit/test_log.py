"""The one log: each event one JSON line laid out as a structlog pipeline of merge_contextvars,
add_log_level and an ISO UTC TimeStamper lays it out, secrets masked, below-level events left
out; the console format is structlog's own renderer."""

from __future__ import annotations

import io
import json
import re

import structlog

from entrypoint import log


def test_a_json_event_has_its_fields_then_name_context_level_and_time() -> None:
    """Fields first, then ``event``, the fixed context, ``level`` and ``timestamp``, in that
    order, as the structlog pipeline it replaces wrote them; a password never shows."""
    out = io.StringIO()
    log.configure("json", "info", stream=out, context={"run": "abc123"})
    log.register_secret("s3cr3t-pw")
    log.get_logger().info("lock_waiting", database="default", holder="pid 7 s3cr3t-pw", waited=1.5)
    [line] = out.getvalue().splitlines()
    data = json.loads(line)
    assert list(data) == ["database", "holder", "waited", "event", "run", "level", "timestamp"]
    assert data["holder"] == "pid 7 ***"
    assert (data["event"], data["level"], data["run"]) == ("lock_waiting", "info", "abc123")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", data["timestamp"])
    expected = structlog.processors.JSONRenderer()(None, "info", dict(data))
    assert line == expected


def test_events_below_the_level_are_left_out() -> None:
    """At level warning, info and debug events write nothing."""
    out = io.StringIO()
    log.configure("json", "warning", stream=out)
    log.get_logger().info("quiet")
    log.get_logger().debug("quieter")
    log.get_logger().warning("loud")
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["loud"]


def test_the_console_format_is_structlogs_renderer() -> None:
    """``console`` renders through structlog's ConsoleRenderer, without colours."""
    out = io.StringIO()
    log.configure("console", "info", stream=out, context={"run": "r1"})
    log.get_logger().info("ready", applied=3)
    text = out.getvalue()
    assert "ready" in text
    assert "applied=3" in text
    assert "run=r1" in text
    assert "\x1b[" not in text


def test_captured_events_are_dicts_without_context_or_time() -> None:
    """``capture_events`` collects each event as its fields, ``event`` and ``log_level``."""
    with log.capture_events() as events:
        log.get_logger().error("failed", error="boom")
    assert events == [{"event": "failed", "log_level": "error", "error": "boom"}]
