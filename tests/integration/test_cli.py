"""The command line: exit codes, one-line errors, the main subcommands end to end."""

import subprocess
import sys

import pytest

from necgs.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "necgs", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_subcommands():
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("compress", "decompress", "info", "datasets", "metrics", "fit", "add"):
        assert cmd in r.stdout


def test_datasets_lists_builtin_and_real(shared_data, capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "figures" in out and "humans_ama" in out and " 88 " in out


def test_metrics_on_two_files(shared_data, capsys):
    a = shared_data / "humans_ama" / "crane" / "mesh_0000.ply"
    assert main(["metrics", str(a), str(a), "--samples", "20000"]) == 0
    assert "floor" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,needle",
    [
        (["metrics", "/nonexistent.ply", "/nonexistent2.ply"], "no such file"),
        (["info", "/nonexistent.ncgs"], "cannot open"),
        (["compress", "/nonexistent", "-o", "/tmp/x.ncgs"], "unknown data set"),
        (["compress", "cad", "-o", "/tmp/x.ncgs", "--width", "enormous"], "unknown decoder size"),
        (["compress", "cad", "-o", "/tmp/x.ncgs", "--preset", "huge"], "unknown preset"),
        (["compress", "cad", "-o", "/tmp/x.ncgs", "--epochs", "-3"], "epochs"),
    ],
)
def test_user_mistakes_are_one_line_errors(args, needle):
    r = run_cli(*args)
    assert r.returncode == 2
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
