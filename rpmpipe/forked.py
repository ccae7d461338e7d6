"""One piece of work run in a forked child process while this process goes on with another.

A run that has two large, independent jobs of Python work (an export writes its claim files
and builds its evidence from the same plan) does them on two cores. The child is forked, so
it starts with everything this process holds (nothing is pickled to it); only its result
comes back, through a pipe, and it should be small (file digests, counts). An exception in
the child is raised again here, with its type and message; a child that dies without an
answer (killed, out of memory) is an error naming its exit code.

The child must not use what cannot be shared across a fork: a database connection, a
network client. Where fork is not available, or the process may use one CPU only, the work
runs here, in order, when its result is asked for: the same result, one core.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ChildDied(RuntimeError):
    """The forked child ended without sending its result."""


def can_fork() -> bool:
    """Whether work may be forked: fork exists here and this process may use two CPUs."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
    return cpus > 1


class Forked(Generic[T]):
    """``work()`` running in a forked child (or, where it cannot be forked, deferred)."""

    def __init__(self, work: Callable[[], T], name: str, fork: bool | None = None):
        self._work: Callable[[], T] | None = None
        self._process: Any = None
        self._answer: Connection | None = None
        self.name = name
        if not (can_fork() if fork is None else fork):
            self._work = work
            return
        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(work, send), name=name, daemon=True)
        process.start()
        send.close()  # the child's end: EOF here once the child is gone
        self._process, self._answer = process, receive

    @property
    def forked(self) -> bool:
        return self._process is not None

    def result(self) -> T:
        """The work's result, waiting for the child; its exception raised here."""
        if self._process is None:
            assert self._work is not None, "the result was already taken"
            work, self._work = self._work, None
            return work()
        assert self._answer is not None
        try:
            ok, value = self._answer.recv()
        except EOFError:
            self._process.join()
            raise ChildDied(
                f"{self.name} (pid {self._process.pid}) ended with exit code "
                f"{self._process.exitcode} before it answered"
            ) from None
        finally:
            self._answer.close()
        self._process.join()
        self._process = None
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    def stop(self) -> None:
        """End the child if it is still working (this process gave up on its result)."""
        process, self._process, self._work = self._process, None, None
        if process is None:
            return
        if process.is_alive():
            process.terminate()
        process.join()
        if self._answer is not None:
            self._answer.close()


@contextmanager
def forked(work: Callable[[], T], name: str, fork: bool | None = None) -> Iterator[Forked[T]]:
    """``work()`` in a forked child for the block; a child whose result the block did not
    take (it raised first) is ended on the way out, so it never outlives its caller."""
    child = Forked(work, name, fork)
    try:
        yield child
    finally:
        child.stop()


def _child(work: Callable[[], Any], answer: Connection) -> None:
    try:
        result: tuple[bool, Any] = (True, work())
    except BaseException as exc:  # raised again in the parent
        result = (False, _portable(exc))
    try:
        answer.send(result)
    finally:
        answer.close()
        sys.stdout.flush()
        sys.stderr.flush()


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError naming its type and message."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - bytes made on the line itself
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
