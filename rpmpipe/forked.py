"""One piece of work run in a forked child process while this process goes on with another.

A run that has two large, independent jobs of Python work (an export writes its claim files
and builds its evidence from the same plan) does them on two cores. The child is forked, so
it starts with everything this process holds (nothing is pickled to it); only its result
comes back, through a pipe, and it should be small (file digests, counts). An exception in
the child is raised again here, with its type and message; a child that dies without an
answer (killed, out of memory) is an error naming its exit code.

The child does its work and leaves with ``os._exit``: no atexit handler, no flush of the
streams it inherited (another thread may have held their locks at the fork), nothing of the
parent's teardown. It must not use what cannot be shared across a fork: a database
connection, a network client, a library's worker threads. Where fork is not available, or the
process may use one CPU only, the work runs here, in order, when its result is asked for: the
same result, one core.
"""

from __future__ import annotations

import os
import pickle
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_FAILED = 70  # the child's exit code when even its answer could not be sent


class ChildDied(RuntimeError):
    """The forked child ended without sending its result."""


def can_fork() -> bool:
    """Whether work may be forked: fork exists here and this process may use two CPUs."""
    if not hasattr(os, "fork"):
        return False
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
    return cpus > 1


class Forked(Generic[T]):
    """``work()`` running in a forked child (or, where it cannot be forked, deferred)."""

    def __init__(self, work: Callable[[], T], name: str, fork: bool | None = None):
        self.name = name
        self._work: Callable[[], T] | None = None
        self._pid: int | None = None
        self._answer: int | None = None
        if not (can_fork() if fork is None else fork):
            self._work = work
            return
        readable, writable = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(readable)
            _child(work, writable)  # never returns
        os.close(writable)  # EOF here once the child is gone
        self._pid, self._answer = pid, readable

    @property
    def forked(self) -> bool:
        return self._pid is not None

    @property
    def pid(self) -> int | None:
        return self._pid

    def result(self) -> T:
        """The work's result, waiting for the child; its exception raised here."""
        if self._pid is None:
            assert self._work is not None, "the result was already taken"
            work, self._work = self._work, None
            return work()
        assert self._answer is not None
        with os.fdopen(self._answer, "rb") as answer:
            self._answer = None
            payload = answer.read()
        code = self._reap()
        if not payload:
            raise ChildDied(f"{self.name} ended with exit code {code} before it answered")
        ok, value = pickle.loads(payload)  # noqa: S301 - our own child's answer
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    def stop(self) -> None:
        """End the child if it is still working (this process gave up on its result)."""
        self._work = None
        if self._answer is not None:
            os.close(self._answer)
            self._answer = None
        if self._pid is None:
            return
        try:
            os.kill(self._pid, signal.SIGKILL)  # its files are a partial run's, discarded
        except ProcessLookupError:
            pass
        self._reap()

    def _reap(self) -> int:
        assert self._pid is not None
        _pid, status = os.waitpid(self._pid, 0)
        self._pid = None
        return os.waitstatus_to_exitcode(status)


@contextmanager
def forked(work: Callable[[], T], name: str, fork: bool | None = None) -> Iterator[Forked[T]]:
    """``work()`` in a forked child for the block; a child whose result the block did not
    take (it raised first) is ended on the way out, so it never outlives its caller."""
    child = Forked(work, name, fork)
    try:
        yield child
    finally:
        child.stop()


def _child(work: Callable[[], Any], answer: int) -> None:
    code = 0
    try:
        try:
            payload = pickle.dumps((True, work()), pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # raised again in the parent
            payload = pickle.dumps((False, _portable(exc)), pickle.HIGHEST_PROTOCOL)
        with os.fdopen(answer, "wb") as out:
            out.write(payload)
    except BaseException:
        code = _FAILED
    finally:
        os._exit(code)


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError naming its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - bytes made on the line itself
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
