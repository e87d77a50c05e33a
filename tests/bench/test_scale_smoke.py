"""Keeps the scale-simulation harness from rotting: a small rollout (nodes phase only, then all
three phases) by the real loop and planner against the in-memory world (bench/fakes.py,
bench/phases_sim.py) in virtual time completes. Asserts completion and consistency, never
timings."""

from __future__ import annotations

from bench.fakes import Timings
from bench.phases_sim import PhaseTimings
from bench.simulate import simulate


def test_small_simulated_rollout_completes() -> None:
    result = simulate(3, 10, 2, Timings(drain_s=1, reimage_s=60, ready_s=10),
                      limit_s=86400)
    assert result.upgraded == 13
    assert result.makespan >= result.lower_bound
    assert result.arm_writes >= 13  # one manual upgrade per instance, plus the model updates


def test_small_simulated_rollout_with_the_resources_and_services_phases_completes() -> None:
    result = simulate(3, 10, 2, Timings(drain_s=1, reimage_s=60, ready_s=10),
                      limit_s=86400, phases=PhaseTimings(deploy_s=30, service_s=20))
    assert result.upgraded == 13
    assert result.deployed == 1  # the release's template, once
    assert result.services_updated == 4  # the four platform services of the catalog release
    assert result.makespan >= result.lower_bound
