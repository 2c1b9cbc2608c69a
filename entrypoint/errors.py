"""Domain errors, each carrying the exit code (sysexits.h) that the CLI turns it into."""

from __future__ import annotations

import os

EX_OK = 0
EX_CHECK_FAILED = 1
EX_USAGE = 64
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_NOEXEC = 126
EX_NOTFOUND = 127
#: Ended by signal N: exit code EX_SIGNAL_BASE + N.
EX_SIGNAL_BASE = 128


class EntrypointError(Exception):
    """Base of every error the CLI reports as one line and an exit code."""

    exit_code = EX_SOFTWARE


class ConfigError(EntrypointError):
    """A bad variable, flag or setting; nothing has run yet."""

    exit_code = EX_USAGE


class PolicyError(EntrypointError):
    """A pending migration is refused by the deploy-phase or rollback policy."""

    exit_code = EX_DATAERR


class DatabaseUnavailable(EntrypointError):
    """A database stayed unreachable past the wait deadline, or can never be reached as set."""

    exit_code = EX_UNAVAILABLE


class MigrationFailed(EntrypointError):
    """A migration raised; the message names it and the database error."""

    exit_code = EX_SOFTWARE

    def __init__(self, message: str, *, lock_timeout: bool = False) -> None:
        super().__init__(message)
        self.lock_timeout = lock_timeout


class LockTimeout(EntrypointError):
    """The migration lock was not acquired before its deadline."""

    exit_code = EX_TEMPFAIL


class MigrationsMissing(EntrypointError):
    """``wait`` mode: the migrations this code needs were not on the database before the
    deadline (``ENTRYPOINT_MIGRATE_WAIT_TIMEOUT``); the message names what is still missing."""

    exit_code = EX_TEMPFAIL


class LockLost(EntrypointError):
    """The migration lock was lost while this run held it (fencing): the run stopped.

    ``detail`` says where the run was (``while applying app.0002_x; its transaction was rolled
    back``); the message always ends saying that nothing more was started.
    """

    exit_code = EX_TEMPFAIL

    def __init__(self, database: str, reason: str, detail: str | None = None) -> None:
        where = f" {detail}" if detail else ""
        super().__init__(
            f"the migration lock on database {database!r} was lost ({reason}){where}; no "
            "further migration was started, and the next run goes on from there"
        )
        self.database = database
        self.reason = reason


class ExecFailed(EntrypointError):
    """The command to exec could not be started."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Interrupted(EntrypointError):
    """SIGTERM or SIGINT arrived before the exec; the exit code is 128 + the signal."""

    def __init__(self, signum: int, message: str | None = None) -> None:
        import signal

        name = signal.Signals(signum).name
        super().__init__(message or f"stopped by {name} before the app server started")
        self.signum = signum
        self.exit_code = EX_SIGNAL_BASE + signum


def describe_os_error(exc: OSError) -> str:
    """A short text for an OSError without the traceback noise."""
    return exc.strerror or os.strerror(exc.errno or 0) or str(exc)
