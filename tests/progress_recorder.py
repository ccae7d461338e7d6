"""A :class:`rpmpipe.progress.Progress` that remembers what a stage reported."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Step:
    label: str
    total: int | None
    done: int = 0


@dataclass
class Recorder:
    live: bool = True
    steps: list[Step] = field(default_factory=list)

    def step(self, label: str, total: int | None = None) -> None:
        self.steps.append(Step(label, total))

    def advance(self, amount: int = 1) -> None:
        assert self.steps, "advance before the first step"
        self.steps[-1].done += amount

    def named(self, label: str) -> Step:
        [found] = [s for s in self.steps if s.label == label]
        return found

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.steps]
