"""Interleaved repetitions: every variant of a workload measured round-robin in
one run, so that a noisy stretch of a shared machine hits baseline and
variants alike and their ratio means something.

Throughput: each variant returns one figure per call; the row reports the
median over the rounds and the range of the per-round ratios to its baseline.
Latency: each variant measures one block of events per call; the samples of
all rounds are pooled for the percentiles, and the per-round p50 ratios give
the range.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

#: Latency rounds: blocks of events, alternating between the variants.
LATENCY_ROUNDS = 10


@dataclass
class Rounds:
    """Figures of named variants, one per round each."""

    figures: dict[str, list[float]]

    def median(self, name: str) -> float:
        return statistics.median(self.figures[name])

    def ratio_range(self, name: str, base: str) -> list[float]:
        """Lowest and highest per-round ratio of `name` to `base`."""
        ratios = [v / b for v, b in zip(self.figures[name], self.figures[base], strict=True) if b]
        return [round(min(ratios), 3), round(max(ratios), 3)] if ratios else []


def rotated(names: list[str], k: int) -> list[str]:
    """The round order: rotated each round, so that no variant always runs
    first (cold) or right after the same neighbour."""
    k %= len(names)
    return names[k:] + names[:k]


def interleaved(runs: int, variants: dict[str, Callable[[], float]]) -> Rounds:
    """Calls every variant once per round, `runs` rounds, round-robin."""
    names = list(variants)
    figures: dict[str, list[float]] = {name: [] for name in names}
    for k in range(max(1, runs)):
        for name in rotated(names, k):
            figures[name].append(variants[name]())
    return Rounds(figures)


def interleaved_blocks(rounds: int, variants: dict[str, Callable[[int], list[int]]]) -> dict[str, list[list[int]]]:
    """Latency: calls every variant with block index 0..rounds-1, round-robin;
    each call measures that block of events and returns its samples (ns)."""
    names = list(variants)
    blocks: dict[str, list[list[int]]] = {name: [] for name in names}
    for k in range(rounds):
        for name in rotated(names, k):
            blocks[name].append(variants[name](k))
    return blocks


def pooled(blocks: list[list[int]]) -> list[int]:
    return [s for block in blocks for s in block]


def p50_ratio_range(blocks: list[list[int]], base: list[list[int]]) -> list[float]:
    """Lowest and highest per-round p50 ratio (latency: lower is better)."""
    ratios = [statistics.median(b) / statistics.median(a) for b, a in zip(blocks, base, strict=True) if b and a]
    return [round(min(ratios), 3), round(max(ratios), 3)] if ratios else []


def split(items: list[T], rounds: int) -> list[list[T]]:
    """`items` in `rounds` consecutive blocks of (nearly) equal size."""
    size, extra = divmod(len(items), rounds)
    out: list[list[T]] = []
    start = 0
    for k in range(rounds):
        end = start + size + (1 if k < extra else 0)
        out.append(items[start:end])
        start = end
    return out
