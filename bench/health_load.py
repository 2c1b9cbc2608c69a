"""The health child under hostile load: probe latency idle and under attack, its memory, its
threads and its connection bound.

    python -m bench.health_load                  # 10 s per phase, about 40 s in all
    python -m bench.health_load --seconds 30     # longer phases

The child is started as the entrypoint starts it (``HealthProcess.start`` on 127.0.0.1), told
the run is ready and handed over as at the exec. Then ``/readyz`` is probed every 50 ms with a
1 s timeout, each probe on a new connection as a kubelet's: first with nothing else going on;
then during the attack of ``tests/support/hostile.py``, run in a process of its own (1,000
slowloris connections, each sending half a head and stalling, replaced whenever the server cuts
one off, and 500 junk or oversized heads spread over the phase); then with twice the connection
bound of slowloris connections, so that every newcomer closes the oldest. Memory is the child's
VmRSS sampled after each probe and its VmHWM; the connection bound is computed from the
descriptor limit the child runs with. No database is needed. Targets are printed next to the
figures and never asserted (the test suite asserts them: tests/e2e/test_health_load.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, Figure, Section, load_average, save, section
from entrypoint.health.process import HealthProcess
from entrypoint.health.server import connection_bound
from tests.support.hostile import Probes, attacking, probe_every, status_kb
from tests.support.pgcluster import free_port

PERIOD = 0.05
TIMEOUT = 1.0
# "Under 30 MB", counted as the kernel counts VmRSS (kB of 1024 bytes), as the tests do.
MEMORY_TARGET_KB = 30_000


def descriptor_limits(pid: int) -> tuple[int, int]:
    """The soft and hard open-file limits of a process, from ``/proc/<pid>/limits``."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return (
                -1 if soft == "unlimited" else int(soft),
                -1 if hard == "unlimited" else int(hard),
            )
    raise KeyError("Max open files")


def latency_figures(s: Section, what: str, probes: Probes, target: float | None) -> None:
    """p50, p99 and max of a series of probes, and how many answered 200 in time."""
    answered = sum(status == 200 for status in probes.statuses)
    s.add(Figure(f"{what}: /readyz p50", probes.percentile(0.5), "s"))
    p99 = probes.percentile(0.99)
    s.add(
        Figure(
            f"{what}: /readyz p99",
            p99,
            "s",
            target=None if target is None else f"< {target * 1000:g} ms",
            met=None if target is None else p99 < target,
        )
    )
    s.add(Figure(f"{what}: /readyz max", probes.percentile(1.0), "s"))
    s.add(
        Figure(
            f"{what}: probes answered 200",
            answered,
            f"of {len(probes.statuses)}",
            target="all",
            met=answered == len(probes.statuses),
        )
    )
    for error in sorted(set(probes.errors))[:3]:
        s.note(f"{what}: {error}")


def attack_phase(
    s: Section,
    health: HealthProcess,
    what: str,
    *,
    slowloris: int,
    junk: int,
    seconds: float,
    target: float | None,
) -> dict[str, object]:
    """Probe during one attack, add its figures; the attack's tally."""
    with attacking(health.port, slowloris=slowloris, junk=junk, seconds=seconds) as tally:
        held = status_kb(health.pid, "VmRSS")
        threads = status_kb(health.pid, "Threads")
        probes = probe_every(
            health.port, period=PERIOD, timeout=TIMEOUT, seconds=seconds, pid=health.pid
        )
    latency_figures(s, what, probes, target)
    s.add(
        Figure(
            f"{what}: child VmRSS peak",
            probes.peak_rss_kb / 1024,
            "MiB",
            target=f"< {MEMORY_TARGET_KB:,} kB",
            met=probes.peak_rss_kb < MEMORY_TARGET_KB,
        )
    )
    s.add(Figure(f"{what}: child threads", threads, "", target="<= 2", met=threads <= 2))
    tally["rss_with_slowloris_open_kb"] = held
    s.note(f"{what}: the attack saw {tally}")
    return tally


def main() -> int:
    """Run the three phases, print the figures, save them under bench/results/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--slowloris", type=int, default=1000)
    parser.add_argument("--junk", type=int, default=500)
    args = parser.parse_args()
    meta: dict[str, Any] = {
        "command": " ".join(["python", "bench/health_load.py", *sys.argv[1:]]),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_before": load_average(),
    }
    print(f"django-entrypoint health under load: {meta['command']}")
    print(f"python {meta['python']}, {meta['cpus']} CPUs, load {meta['load_before']}")
    started = time.time()
    report: list[Section] = []
    how = (
        f"health child after the hand-off; /readyz every {PERIOD * 1000:g} ms on new "
        f"connections, {TIMEOUT:g} s timeout, {args.seconds:g} s per phase"
    )
    with HealthProcess.start("127.0.0.1", free_port()) as health:
        health.send("ready")
        health.handoff()
        time.sleep(0.5)
        soft, hard = descriptor_limits(health.pid)
        _, bound = connection_bound(soft, hard)
        with section(report, "health child", how) as s:
            s.add(Figure("connection bound", bound, "connections"))
            s.add(Figure("child's open-file limit (soft)", soft, "descriptors"))
            idle = probe_every(
                health.port, period=PERIOD, timeout=TIMEOUT, seconds=args.seconds, pid=health.pid
            )
            rest = status_kb(health.pid, "VmRSS")
            latency_figures(s, "idle", idle, 0.005)
            s.add(Figure("idle: child VmRSS", rest / 1024, "MiB"))
            s.note(f"attack: {args.slowloris} slowloris connections and {args.junk} junk heads")
            tally = attack_phase(
                s,
                health,
                "attack",
                slowloris=args.slowloris,
                junk=args.junk,
                seconds=args.seconds,
                target=0.100,
            )
            held = tally["rss_with_slowloris_open_kb"]
            assert isinstance(held, int)
            s.add(
                Figure(
                    "memory per slowloris connection",
                    (held - rest) / args.slowloris * 1024,
                    "bytes",
                )
            )
            s.note(f"over the bound: {2 * bound} slowloris connections, twice the bound")
            attack_phase(
                s,
                health,
                "over the bound",
                slowloris=2 * bound,
                junk=0,
                seconds=args.seconds,
                target=0.100,
            )
            peak = status_kb(health.pid, "VmHWM")
            s.add(
                Figure(
                    "child VmHWM (peak RSS of its life)",
                    peak / 1024,
                    "MiB",
                    target=f"< {MEMORY_TARGET_KB:,} kB",
                    met=peak < MEMORY_TARGET_KB,
                )
            )
    meta["load_after"] = load_average()
    meta["seconds"] = round(time.time() - started, 1)
    path = save(report, meta)
    print(f"\nload {meta['load_after']} after {meta['seconds']} s; saved {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
