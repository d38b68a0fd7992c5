"""The `husai` command: every sub-command is registered, and errors exit 2 on stderr."""
import importlib, subprocess, sys
import pytest
from husai.cli import CLI_MODULES, build_parser, main

@pytest.mark.parametrize('name', CLI_MODULES)
def test_every_cli_module_registers_a_command(name):
    mod = importlib.import_module(name)
    assert callable(getattr(mod, 'add_cli', None)), f'{name} has no add_cli(subparsers)'

def test_help_lists_subcommands():
    helptext = build_parser().format_help()
    for cmd in ('grok', 'train-saes', 'stability', 'reproduce'):
        assert cmd in helptext

def test_no_command_and_bad_input_exit_2(tmp_path, capsys):
    assert main([]) == 2
    r = subprocess.run([sys.executable, '-c', 'import sys, husai.cli; sys.exit(husai.cli.main())', 'reproduce', '--root', str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and 'nbs/findings' in r.stderr and r.stdout == ''
