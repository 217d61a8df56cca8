"""handx-jax: text-conditioned bimanual hand motion generation and its scaling study."""

__version__ = "0.1.0"
