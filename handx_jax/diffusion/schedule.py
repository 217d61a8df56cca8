"""Noise schedules for Gaussian diffusion: cosine (Nichol & Dhariwal) with respacing.

`Schedule` holds float64 numpy tables computed once; `as_jax()` gives float32 device
copies. A respaced schedule keeps a subset of the original timesteps and recomputes
betas from `alpha_bar` so the marginals q(x_t | x_0) at the kept steps are unchanged;
`timesteps` maps each respaced index back to the original step the model was trained on.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Schedule:
    betas: np.ndarray          # (S,)
    alpha_bar: np.ndarray      # (S,) cumulative product of (1 - beta)
    timesteps: np.ndarray      # (S,) original timestep of each (respaced) step

    @property
    def num_steps(self) -> int:
        return len(self.betas)

    @property
    def alpha_bar_prev(self) -> np.ndarray:
        return np.concatenate([[1.0], self.alpha_bar[:-1]])

    @property
    def posterior_variance(self) -> np.ndarray:
        """Variance of q(x_{t-1} | x_t, x_0): the 'small fixed' DDPM variance."""
        return self.betas * (1.0 - self.alpha_bar_prev) / (1.0 - self.alpha_bar)

    def as_jax(self) -> dict[str, jnp.ndarray]:
        """float32 tables; sampler coefficients are formed in float64 first (1 - alpha_bar
        near t = 0 is ~1e-5 and loses its digits if computed in float32)."""
        ab, prev = self.alpha_bar, self.alpha_bar_prev
        coefs = {
            "sqrt_alpha_bar": np.sqrt(ab),
            "sqrt_one_minus_alpha_bar": np.sqrt(1.0 - ab),
            "sqrt_alpha_bar_prev": np.sqrt(prev),
            "sqrt_one_minus_alpha_bar_prev": np.sqrt(1.0 - prev),
            "posterior_coef_x0": np.sqrt(prev) * self.betas / (1.0 - ab),
            "posterior_coef_xt": np.sqrt(1.0 - self.betas) * (1.0 - prev) / (1.0 - ab),
            "posterior_std": np.sqrt(self.posterior_variance),
            # DDIM sigma for eta = 1 (scaled by eta at sampling time).
            "ddim_sigma": np.sqrt((1.0 - prev) / (1.0 - ab) * (1.0 - ab / prev)),
        }
        return {k: jnp.asarray(v, jnp.float32) for k, v in coefs.items()} | {
            "betas": jnp.asarray(self.betas, jnp.float32),
            "alpha_bar": jnp.asarray(self.alpha_bar, jnp.float32),
            "alpha_bar_prev": jnp.asarray(self.alpha_bar_prev, jnp.float32),
            "posterior_variance": jnp.asarray(self.posterior_variance, jnp.float32),
            "timesteps": jnp.asarray(self.timesteps, jnp.int32),
        }


def cosine_alpha_bar(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """alpha_bar_t for t = 1..num_steps from f(t) = cos^2(((t/T) + s) / (1 + s) * pi/2), betas clipped."""
    f = lambda t: math.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = np.array([min(1 - f(i + 1) / f(i), max_beta) for i in range(num_steps)], np.float64)
    return np.cumprod(1.0 - betas)


def linear_alpha_bar(num_steps: int) -> np.ndarray:
    scale = 1000.0 / num_steps
    betas = np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def make_schedule(num_steps: int = 1000, kind: str = "cosine") -> Schedule:
    """The training schedule (`kind` in cosine, linear)."""
    if kind == "cosine":
        alpha_bar = cosine_alpha_bar(num_steps)
    elif kind == "linear":
        alpha_bar = linear_alpha_bar(num_steps)
    else:
        raise ValueError(f"unknown noise schedule {kind!r}; choose cosine or linear")
    return _from_alpha_bar(alpha_bar, np.arange(num_steps))


def _from_alpha_bar(alpha_bar: np.ndarray, timesteps: np.ndarray) -> Schedule:
    prev = np.concatenate([[1.0], alpha_bar[:-1]])
    betas = 1.0 - alpha_bar / prev
    return Schedule(betas=betas, alpha_bar=alpha_bar.copy(), timesteps=np.asarray(timesteps, np.int64))


def respaced_timesteps(num_steps: int, sample_steps: int) -> np.ndarray:
    """`sample_steps` original timesteps, evenly spread over [0, num_steps - 1], both ends kept."""
    if not 1 <= sample_steps <= num_steps:
        raise ValueError(f"sampling steps must be in 1..{num_steps}, got {sample_steps}")
    if sample_steps == 1:
        return np.array([num_steps - 1])
    return np.unique(np.round(np.linspace(0, num_steps - 1, sample_steps)).astype(np.int64))


def respace(schedule: Schedule, sample_steps: int) -> Schedule:
    """A schedule over `sample_steps` of the original steps with the same alpha_bar there."""
    keep = respaced_timesteps(schedule.num_steps, sample_steps)
    return _from_alpha_bar(schedule.alpha_bar[keep], schedule.timesteps[keep])


def q_sample(alpha_bar: jnp.ndarray, x0: jnp.ndarray, t: jnp.ndarray, noise: jnp.ndarray) -> jnp.ndarray:
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise, t (B,) indexing `alpha_bar`."""
    ab = alpha_bar[t].reshape((-1,) + (1,) * (x0.ndim - 1))
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * noise
