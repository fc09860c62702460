"""Prices per million tokens for the Anthropic models, and the cost of a turn's usage.

Matched by the longest model-name prefix, so dated names (claude-sonnet-4-5-20250929) and
aliases both find their row. An unknown model is priced as DEFAULT_MODEL and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_MODEL = "claude-sonnet-4-5"


@dataclass(frozen=True)
class Price:
    input: float  # $ per million input tokens
    output: float
    cache_write: float  # 5-minute ephemeral cache writes
    cache_read: float


PRICES: dict[str, Price] = {
    "claude-opus-4-5": Price(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4": Price(15.0, 75.0, 18.75, 1.50),  # opus 4 and 4.1
    "claude-sonnet-4": Price(3.0, 15.0, 3.75, 0.30),  # sonnet 4 and 4.5
    "claude-3-7-sonnet": Price(3.0, 15.0, 3.75, 0.30),
    "claude-haiku-4-5": Price(1.0, 5.0, 1.25, 0.10),
    "claude-3-5-haiku": Price(0.80, 4.0, 1.0, 0.08),
}


def price_for(model: str | None) -> tuple[Price, bool]:
    """The model's price and whether it is known (False: priced as DEFAULT_MODEL)."""
    name = (model or DEFAULT_MODEL).lower()
    best = max((k for k in PRICES if name.startswith(k)), key=len, default=None)
    if best is None:
        return PRICES["claude-sonnet-4"], False
    return PRICES[best], True


def usage_cost(model: str | None, usage: dict[str, Any]) -> float:
    """Dollars for one response's usage fields (input, output, cache write, cache read)."""
    p, _ = price_for(model)
    return (
        int(usage.get("input_tokens") or 0) * p.input
        + int(usage.get("output_tokens") or 0) * p.output
        + int(usage.get("cache_creation_input_tokens") or 0) * p.cache_write
        + int(usage.get("cache_read_input_tokens") or 0) * p.cache_read
    ) / 1_000_000


def estimate_cost(model: str | None, input_tokens: int, output_tokens: int) -> float:
    """A planning estimate: input at the uncached rate, output at the output rate."""
    return usage_cost(model, {"input_tokens": input_tokens, "output_tokens": output_tokens})
