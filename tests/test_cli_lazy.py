"""The top-level group imports only the invoked command's module: its name-to-module mapping
must match what the modules define, and help and usage errors must read as they did when
every module was imported up front."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import click
from click.testing import CliRunner

import workbench.cli
from workbench.cli.main import COMMAND_MODULES, WorkbenchGroup, cli


def _modules_commands() -> dict[str, tuple[click.Command, ...]]:
    """Every module under workbench/cli that has COMMANDS, and those commands."""
    found: dict[str, tuple[click.Command, ...]] = {}
    for info in pkgutil.iter_modules(workbench.cli.__path__):
        module = importlib.import_module(f"workbench.cli.{info.name}")
        if hasattr(module, "COMMANDS"):
            found[info.name] = tuple(module.COMMANDS)
    return found


def test_mapping_matches_every_modules_commands() -> None:
    # Both directions: a command added to a module's COMMANDS but not to the mapping would be
    # unreachable; a mapped name its module no longer defines would be "No such command".
    defined = {(command.name, module) for module, commands in _modules_commands().items() for command in commands}
    assert set(COMMAND_MODULES.items()) == defined


def _fresh_lazy() -> WorkbenchGroup:
    """A lazy group with nothing loaded yet (`cli` itself may have loaded commands in this process)."""
    return WorkbenchGroup(name=cli.name, params=cli.params, callback=cli.callback, help=cli.help,
                          invoke_without_command=True, context_settings=cli.context_settings)


def _eager() -> click.Group:
    """The group as it was: every command added up front."""
    commands = [command for commands in _modules_commands().values() for command in commands]
    return click.Group(name=cli.name, params=cli.params, callback=cli.callback, help=cli.help, commands=commands,
                       invoke_without_command=True, context_settings=cli.context_settings)


def test_help_and_unknown_commands_read_as_before() -> None:
    runner = CliRunner()
    for args in (["--help"], ["recrds"], ["conection", "list"], ["nonsense"]):
        lazy = runner.invoke(_fresh_lazy(), args, prog_name="workbench")
        eager = runner.invoke(_eager(), args, prog_name="workbench")
        assert (lazy.exit_code, lazy.output) == (eager.exit_code, eager.output), args
    assert runner.invoke(_fresh_lazy(), ["recrds"]).exit_code == 2


def test_a_command_imports_only_its_own_module() -> None:
    # A fresh interpreter (this one has imported every module already). `sandbox` needs no
    # store: neither it nor the CLI's shared modules import SQLAlchemy (about 0.2 s).
    probe = ("import sys, click\n"
             "from workbench.cli.main import cli\n"
             "assert cli.get_command(click.Context(cli), 'sandbox') is not None\n"
             "print('sqlalchemy' in sys.modules)\n"
             "assert cli.get_command(click.Context(cli), 'records') is not None\n"
             "print(' '.join(sorted(m for m in sys.modules if m.startswith('workbench.cli.'))))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    store_imported, modules = done.stdout.splitlines()
    assert store_imported == "False"
    imported = {name.removeprefix("workbench.cli.") for name in modules.split()}
    assert imported & set(COMMAND_MODULES.values()) == {"sandbox_commands", "list_commands"}
