"""`handx data` command group: subcommands present; the synth hook is optional."""
import sys
import types

from handx_jax import cli


def _data_subcommands(parser):
    data = parser._subparsers._group_actions[0].choices["data"]
    return set(data._subparsers._group_actions[0].choices)


def test_subcommands_without_synth(monkeypatch):
    monkeypatch.setitem(sys.modules, "handx_jax.commands.synth", None)  # import fails
    try:
        names = _data_subcommands(cli.build_parser())
    except ModuleNotFoundError:
        raise AssertionError("a missing synth module must be skipped")
    assert {"validate", "convert", "build", "stats"} <= names and "synth" not in names


def test_synth_hook_adds_subcommand(monkeypatch):
    module = types.ModuleType("handx_jax.commands.synth")

    def add_parser(data_subparsers):
        p = data_subparsers.add_parser("synth")
        p.set_defaults(func=lambda args: 7)

    module.add_parser = add_parser
    monkeypatch.setitem(sys.modules, "handx_jax.commands.synth", module)
    assert "synth" in _data_subcommands(cli.build_parser())
    assert cli.main(["data", "synth"]) == 7
