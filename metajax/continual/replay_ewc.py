"""Replay and EWC together: a composition of two registered strategies."""

from __future__ import annotations

import dataclasses

from metajax.continual.base import Strategy, StrategyContext, compose
from metajax.continual.ewc import EWCOptions, build_ewc
from metajax.continual.replay import ReplayOptions, build_replay
from metajax.registry import CONTINUAL_STRATEGIES


@dataclasses.dataclass(frozen=True)
class ReplayEWCOptions(ReplayOptions, EWCOptions):
    """Replay's options and EWC's."""


@CONTINUAL_STRATEGIES.register(
    "replay-ewc", hyperparams=ReplayEWCOptions, description="Experience replay and the EWC penalty together."
)
def build_replay_ewc(options: ReplayEWCOptions, context: StrategyContext) -> Strategy:
    return compose(build_replay(options, context), build_ewc(options, context))
