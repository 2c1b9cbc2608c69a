"""Which servers' SQL is collected and read, and what a MySQL install without its reader says."""

from __future__ import annotations

import importlib.util
import io
import json
from typing import Any

import pytest

from entrypoint import log
from entrypoint.engine import sql


class _Connection:
    def __init__(self, vendor: str) -> None:
        self.vendor = vendor


def test_mysql_without_sqlglot_is_judged_by_its_operations_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without sqlglot, MySQL keeps the operation-only rules (no collector) and the log says
    once what is missing and how to install it; PostgreSQL is read regardless."""
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "sqlglot" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    sql._say_unread.cache_clear()
    out = io.StringIO()
    log.configure("json", "info", stream=out)
    try:
        assert sql.collector_for(_Connection("mysql")) is None
        assert sql.collector_for(_Connection("mysql")) is None
        assert isinstance(sql.collector_for(_Connection("postgresql")), sql.Collector)
        assert sql.collector_for(_Connection("sqlite")) is None
    finally:
        sql._say_unread.cache_clear()
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(event["event"], event["level"]) for event in events] == [("sql_not_read", "warning")]
    assert events[0]["fix"] == "pip install 'django-entrypoint[mysql]'"


@pytest.mark.mysql
def test_mysql_with_sqlglot_is_read() -> None:
    """With the mysql extra installed, MySQL operations get a collector."""
    assert isinstance(sql.collector_for(_Connection("mysql")), sql.Collector)
