"""What the runner makes of a scenario before starting anything: quick mode, repeats,
link conditions for the emulator, bot and client command lines."""

from __future__ import annotations

import pytest

from experiments.runner.links import LinkTranslationError, conditions
from experiments.runner.nodes import bots_argv
from experiments.runner.run import quicken, with_repeats
from experiments.runner.services import Service
from experiments.scenarios import find, load
from experiments.scenarios.model import BotGroupSpec, BurstyLoss, LinkSpec


def test_quick_shortens_and_scales_actions() -> None:
    s = load(find("offload-constrained-device"))
    q = quicken(s)
    assert (q.warmup_s, q.duration_s, q.repeats) == (5.0, 20.0, 1)
    scale = 20.0 / s.duration_s
    expected = [a.at_s * scale for a in s.actions]
    assert [a.at_s for a in q.actions] == pytest.approx(expected, abs=1e-3)
    assert all(0 <= a.at_s < q.duration_s for a in q.actions)


def test_more_repeats_than_seeds_continue_the_seeds() -> None:
    s = with_repeats(load(find("policy-comparison")), 5)
    assert s.seeds == [11, 12, 13, 14, 15]
    assert len(s.runs()) == 4 * 5
    assert [r.label for r in s.runs()][:2] == ["static-local-r1", "static-local-r2"]


def test_link_conditions_in_emulator_units() -> None:
    c = conditions(LinkSpec("device", "edge", 0.0075, 0.0025, 0.001, None, 7.21e6))
    assert (c.delay_ms, c.jitter_ms, c.loss, c.rate_mbit) == pytest.approx((7.5, 2.5, 0.001, 7.21))
    bursty = conditions(LinkSpec("a", "b", bursty=BurstyLoss(p=0.01, r=0.25)))
    assert bursty.loss == pytest.approx(0.01 / 0.26) and bursty.loss_burst == pytest.approx(4.0)
    with pytest.raises(LinkTranslationError, match="a<->b"):
        conditions(LinkSpec("a", "b", latency_s=120.0))  # over the emulator's 60 s


def test_bots_argv_maps_options_and_reports_the_rest() -> None:
    group = BotGroupSpec("b", 3, "walk-modify", 4.0, options={"box": 24, "edit_interval": 2.0,
                                                              "reach": 3.0})  # fmt: skip
    sim = Service.__new__(Service)
    sim.url = "ws://10.0.0.2:8765"
    argv, skipped = bots_argv(group, sim, seed=7)
    joined = " ".join(argv)
    assert "--server ws://10.0.0.2:8765 --count 3 --behaviour walk-modify" in joined
    assert "--seed 7" in joined and "--box 24" in joined and "--edit-interval 2.0" in joined
    assert skipped == ["reach"]
