"""Work forked to a child process: its result, its errors and its end come back to the caller."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from rpmpipe import forked as forked_module
from rpmpipe.forked import ChildDied, Forked, forked


class Refused(Exception):
    """An error of the work that the caller must see as it is."""


class Unpicklable(Exception):
    def __init__(self, handle: object) -> None:
        super().__init__("bad handle")
        self.handle = handle

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("cannot pickle a handle")


def test_the_work_runs_in_another_process_with_what_this_one_holds() -> None:
    held = {"claims": list(range(1000))}  # inherited by the fork, never sent to the child
    child = Forked(lambda: (os.getpid(), sum(held["claims"])), "sum", fork=True)
    assert child.forked
    pid, total = child.result()
    assert pid != os.getpid() and total == 499500


def test_an_error_of_the_work_is_raised_here_with_its_type_and_message() -> None:
    def refuse() -> None:
        raise Refused("disk full writing charges.csv")

    with pytest.raises(Refused, match="disk full writing charges.csv"):
        Forked(refuse, "refuse", fork=True).result()


def test_an_error_that_cannot_cross_the_pipe_arrives_as_a_runtime_error_naming_it() -> None:
    def refuse() -> None:
        raise Unpicklable(object())

    with pytest.raises(RuntimeError, match="Unpicklable: bad handle"):
        Forked(refuse, "refuse", fork=True).result()


def test_a_child_that_dies_without_an_answer_is_an_error_with_its_exit_code() -> None:
    with pytest.raises(ChildDied, match="exit code 3"):
        Forked(lambda: os._exit(3), "dies", fork=True).result()
    with pytest.raises(ChildDied, match=f"exit code -{int(signal.SIGKILL)}"):
        Forked(lambda: os.kill(os.getpid(), signal.SIGKILL), "killed", fork=True).result()


def test_a_child_whose_result_is_not_taken_is_ended_when_the_block_raises(tmp_path: Path) -> None:
    started = tmp_path / "started"
    seen: list[Forked[None]] = []
    pids: list[int] = []

    def slow() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as a handler inherited might
        started.touch()
        time.sleep(60)

    with pytest.raises(Refused), forked(slow, "slow", fork=True) as child:
        seen.append(child)
        assert child.pid is not None
        pids.append(child.pid)
        deadline = time.monotonic() + 10
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        raise Refused("the caller failed first")
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)  # ended and reaped, not left running for a minute
    assert not seen[0].forked


def test_without_fork_the_work_runs_here_when_its_result_is_asked_for() -> None:
    calls: list[int] = []

    def work() -> int:
        calls.append(os.getpid())
        return len(calls)

    child = Forked(work, "here", fork=False)
    assert not child.forked and calls == []
    assert child.result() == 1 and calls == [os.getpid()]


def test_one_cpu_means_no_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0}, raising=False)
    assert not forked_module.can_fork()
    assert not Forked(lambda: None, "one cpu").forked
