"""Keeps the scale-simulation harness from rotting: a small rollout by the real loop and planner
against the in-memory world (bench/fakes.py) in virtual time completes. Asserts completion and
consistency, never timings."""

from __future__ import annotations

from bench.fakes import Timings
from bench.simulate import simulate


def test_small_simulated_rollout_completes() -> None:
    result = simulate(3, 10, 2, Timings(drain_s=1, reimage_s=60, ready_s=10),
                      limit_s=86400)
    assert result.upgraded == 13
    assert result.makespan >= result.lower_bound
    assert result.arm_writes >= 13  # one manual upgrade per instance, plus the model updates
