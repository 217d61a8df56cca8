"""DDPM and DDIM samplers for an x0-predicting denoiser, jitted with `lax.scan`.

Classifier-free guidance runs the conditional and the null (zero) condition in one
batch of 2B and mixes the x0 predictions: x0 = x0_uncond + g * (x0_cond - x0_uncond).
An optional constraint (see `masks.py`) blends given values into every x0 prediction,
which is how partial denoising (in-betweening, keyframes, hand reaction, wrist paths)
works with the same model.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from handx_jax.diffusion.schedule import Schedule

# denoise_fn(x_t (B,T,F), t (B,) original-scale steps, mask (B,T), cond (B,D)) -> x0_hat (B,T,F)
DenoiseFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]
METHODS = ("ddim", "ddpm")


def guided_x0(denoise_fn: DenoiseFn, x_btf, t_b, mask_bt, cond_bd, guidance: float):
    """x0 prediction with classifier-free guidance; cond and uncond share one batch."""
    if guidance == 1.0:
        return denoise_fn(x_btf, t_b, mask_bt, cond_bd)
    b = x_btf.shape[0]
    both = denoise_fn(
        jnp.concatenate([x_btf, x_btf]), jnp.concatenate([t_b, t_b]),
        jnp.concatenate([mask_bt, mask_bt]), jnp.concatenate([cond_bd, jnp.zeros_like(cond_bd)]),
    )
    cond_x0, uncond_x0 = both[:b], both[b:]
    return uncond_x0 + guidance * (cond_x0 - uncond_x0)


def apply_constraint(x0_btf, constraint):
    """Blend known values into x0: w * values + (1 - w) * x0 (w in [0, 1] per entry)."""
    if constraint is None:
        return x0_btf
    values, weight = constraint
    return weight * values + (1.0 - weight) * x0_btf


def sample(
    denoise_fn: DenoiseFn,
    schedule: Schedule,
    mask_bt: jax.Array,
    cond_bd: jax.Array,
    rng: jax.Array,
    *,
    feature_dim: int,
    guidance: float = 2.5,
    method: str = "ddim",
    eta: float = 0.0,
    constraint=None,
) -> jax.Array:
    """Run the reverse process over `schedule` (already respaced) from pure noise; returns x0 (B,T,F).

    Traceable: call under `jax.jit` with `denoise_fn`, `schedule`, `guidance`, `method`
    static. DDIM with eta=0 is deterministic given the initial noise; DDPM uses the
    posterior ('small fixed') variance.
    """
    if method not in METHODS:
        raise ValueError(f"unknown sampler {method!r}; choose one of {METHODS}")
    tab = schedule.as_jax()
    steps = schedule.num_steps
    b, length = mask_bt.shape
    rng, init_key = jax.random.split(rng)
    x = jax.random.normal(init_key, (b, length, feature_dim), jnp.float32)

    def body(carry, i):
        x, key = carry
        key, noise_key = jax.random.split(key)
        idx = steps - 1 - i
        t = jnp.full((b,), tab["timesteps"][idx], jnp.int32)
        x0 = apply_constraint(guided_x0(denoise_fn, x, t, mask_bt, cond_bd, guidance), constraint)
        if method == "ddim":
            eps = (x - tab["sqrt_alpha_bar"][idx] * x0) / tab["sqrt_one_minus_alpha_bar"][idx]
            sigma = eta * tab["ddim_sigma"][idx]
            dir_scale = jnp.sqrt(jnp.maximum(tab["sqrt_one_minus_alpha_bar_prev"][idx] ** 2 - sigma**2, 0.0))
            x_prev = tab["sqrt_alpha_bar_prev"][idx] * x0 + dir_scale * eps
            if eta != 0.0:  # deterministic DDIM draws no noise (the keys advance all the same)
                x_prev = x_prev + sigma * jax.random.normal(noise_key, x.shape, x.dtype)
        else:
            z = jax.random.normal(noise_key, x.shape, x.dtype)
            x_prev = tab["posterior_coef_x0"][idx] * x0 + tab["posterior_coef_xt"][idx] * x + tab["posterior_std"][idx] * z
        return (x_prev, key), None

    (x, _), _ = jax.lax.scan(body, (x, rng), jnp.arange(steps))
    return x
