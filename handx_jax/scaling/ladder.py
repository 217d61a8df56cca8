"""Model-size ladders generated from one shape rule instead of hand-written size tables.

A rung is named by its width; depth grows with width at a fixed aspect ratio (width per
layer), heads follow from a fixed head width, and the MLP is a fixed multiple of the width:

    layers = clip(round(d_model / aspect), min_layers, max_layers)
    heads  = max(1, d_model // head_dim)
    mlp    = mlp_ratio * d_model, rounded up to a multiple of mlp_multiple

Every family config reads the same four fields (`model.num_layers`, `model.d_model`,
`model.mlp_dim`, `model.num_heads`), so a rung becomes a list of config overrides. A gated
(SwiGLU) MLP has three matrices instead of two, so `GATED_RULE` gives it 8/3 of the width
(LLaMA's rule) and the same MLP weights per block as the two-matrix 4x rule.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction


@dataclasses.dataclass(frozen=True)
class ShapeRule:
    """Width -> (layers, heads, mlp) rule; the defaults suit CPU-sized transformers."""

    aspect: int = 16
    head_dim: int = 32
    mlp_ratio: int | Fraction = 4
    mlp_multiple: int = 1
    min_layers: int = 1
    max_layers: int = 48

    def shape(self, d_model: int) -> dict:
        d_model = int(d_model)
        if d_model <= 0:
            raise ValueError(f"ladder: d_model={d_model} must be positive")
        heads = max(1, d_model // self.head_dim)
        if d_model % heads:
            raise ValueError(f"ladder: d_model={d_model} is not divisible by its {heads} heads "
                             f"(head_dim {self.head_dim}); pick a width that is a multiple of it")
        layers = min(self.max_layers, max(self.min_layers, round(d_model / self.aspect)))
        mlp = math.ceil(Fraction(self.mlp_ratio) * d_model / self.mlp_multiple) * self.mlp_multiple
        return {"num_layers": layers, "d_model": d_model, "mlp_dim": int(mlp), "num_heads": heads}


GATED_RULE = ShapeRule(mlp_ratio=Fraction(8, 3), mlp_multiple=8)  # SwiGLU families (the prefix-LM)


def label(d_model: int) -> str:
    """A rung's name: its width, e.g. `d48`."""
    return f"d{int(d_model)}"


def overrides(shape: dict) -> list[str]:
    """Config overrides that give a family config this shape."""
    return [f"model.{key}={int(value)}" for key, value in shape.items()]


def ladder(widths, rule: ShapeRule = ShapeRule()) -> dict[str, list[str]]:
    """{label: overrides} for each width, smallest first."""
    widths = sorted({int(w) for w in widths})
    if not widths:
        raise ValueError("ladder: no widths given")
    return {label(w): overrides(rule.shape(w)) for w in widths}
