"""Scenario links (`LinkSpec`, base units) → testbed `LinkConditions` (the emulator's units)."""

from __future__ import annotations

from experiments.scenarios.model import LinkSpec
from experiments.testbed.links import LinkConditions, LinkConfigError


class LinkTranslationError(ValueError):
    """A scenario link the emulator cannot represent (the message says which and why)."""


def conditions(link: LinkSpec) -> LinkConditions:
    """The emulator's conditions for one direction of ``link``.

    Bursty loss: the emulator's Gilbert–Elliott model has a Bad state that
    drops everything and is left with probability ``1/loss_burst``; we give
    it the scenario's long-run loss (`BurstyLoss.mean_loss`) and its mean
    burst length ``1/r``. A scenario's ``bad_loss`` below 1 or ``good_loss``
    above 0 are thereby approximated by the same mean loss in bursts of the
    same mean length.
    """
    loss, burst = link.loss, 1.0
    if link.bursty is not None:
        loss = link.bursty.mean_loss
        burst = 1.0 / link.bursty.r if link.bursty.r > 0 else 1e6
    try:
        return LinkConditions(
            delay_ms=link.latency_s * 1000.0,
            jitter_ms=link.jitter_s * 1000.0,
            loss=loss,
            loss_burst=max(1.0, burst),
            rate_mbit=None if link.bandwidth_bps is None else link.bandwidth_bps / 1e6,
        )
    except LinkConfigError as exc:
        where = f" (scenario line {link.line})" if link.line else ""
        raise LinkTranslationError(f"link {link.a}<->{link.b}{where}: {exc}") from exc
