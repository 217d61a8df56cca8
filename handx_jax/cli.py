"""`handx` console script: thin argument parsing; the library does the work.

Each stage registers its subcommands in `handx_jax/commands/<stage>.py` through
`register(subparsers)`; a subcommand sets `func(args) -> int` as its handler.
"""

import argparse
import importlib
import sys

from handx_jax import configlib

# Stage modules in data-flow order; a module that is missing is skipped so a partial
# install still offers what it has.
COMMAND_MODULES = (
    "data",
    "annotate",
    "text",
    "train",
    "generate",
    "evaluate",
    "scaling",
    "quickstart",
    "bench",
    "view",
    "report",
    "plan",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="handx", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"handx_jax.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"handx_jax.commands.{name}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, overrides = configlib.split_config_args(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.config_overrides = overrides
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
