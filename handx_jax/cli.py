"""`handx` console script: thin argument parsing; the library does the work.

Each stage registers its subcommands in `handx_jax/commands/<stage>.py` through
`register(subparsers)`; a subcommand sets `func(args) -> int` as its handler.
Bad input (a missing file, a malformed flag, prompt file or config field) prints one line
`error: ...` and exits 2; `--debug` (anywhere on the line) or HANDX_DEBUG=1 shows the traceback.
"""

import argparse
import importlib
import os
import sys

from handx_jax import configlib

# Stage modules in data-flow order; a module that is missing is skipped so a partial
# install still offers what it has.
COMMAND_MODULES = (
    "data",
    "annotate",
    "text",
    "train",
    "tokenize",
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


# Exceptions that mean bad input rather than a bug in handx (the message names the file,
# flag or field); anything else keeps its traceback.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
               PermissionError)
USER_ERROR_EXIT = 2


def debugging(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("HANDX_DEBUG", "") not in ("", "0")


def user_error_line(err: BaseException) -> str:
    """`error: <message>` on one line (KeyError's repr quotes are dropped)."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else err
    if isinstance(err, OSError) and err.filename and err.strerror is not None:
        text = f"{err.filename}: {err.strerror}"
    return "error: " + " ".join(str(text).split("\n")).strip()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debugging(argv)
    argv = [a for a in argv if a != "--debug"]
    try:
        argv, overrides = configlib.split_config_args(argv)
        parser = build_parser()
        args = parser.parse_args(argv)
        args.config_overrides = overrides
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if debug:
            raise
        hint = "" if isinstance(err, (configlib.UserError, OSError)) else \
            " (--debug or HANDX_DEBUG=1 shows the traceback)"
        print(user_error_line(err) + hint, file=sys.stderr)
        return USER_ERROR_EXIT


if __name__ == "__main__":
    sys.exit(main())
