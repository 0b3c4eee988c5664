"""The command line: every sub-command is registered and documents its arguments."""

import subprocess
import sys

import pytest

from maskrcnn import cli


def test_help_lists_every_command(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", cli.COMMANDS)
def test_each_command_has_help(name):
    proc = subprocess.run([sys.executable, "-m", "maskrcnn.cli", name, "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage: maskrcnn " + name in proc.stdout
