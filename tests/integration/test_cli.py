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
        (["compress", "cad", "-o", "/tmp/x.ncgs", "--resolution", "48"], "power of two"),
        (["compress", "cad", "-o", "/tmp/x.ncgs", "--feature-bits", "40"], "feature bits"),
        (["compress", "cad", "-o", "/tmp/x.ncgs", "--lambda-rate", "-1"], "lambda_rate"),
        (["compress", "cad", "-o", "/tmp/x.ncgs", "--target-ratio", "1e9"], "out of reach"),
        (["compress", "cad", "-o", "/tmp/x.ncgs", "--target-bytes", "0"], "must be positive"),
        (["evaluate", "cad", "-o", "/tmp/x", "--lambda-rates", "0,x"], "--lambda-rates"),
        (["compress", "cad", "-o", "/tmp/x.ncgs", "--nnodes", "2"], "needs --rdzv-endpoint"),
        (
            ["compress", "cad", "-o", "/tmp/x.ncgs", "--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1"],
            "--node-rank",
        ),
        (["compress", "cad", "-o", "/tmp/x.ncgs", "--nnodes", "2", "--rdzv-endpoint", "nohost"], "HOST:PORT"),
    ],
)
def test_user_mistakes_are_one_line_errors(args, needle):
    r = run_cli(*args)
    assert r.returncode == 2
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_compress_info_decompress_view_round_trip(tmp_path, shared_data):
    """The CLI end to end on two real CAD parts with the quick preset, few epochs and a tied decoder."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("featuretype.STL", "angle_block.STL"):
        p = shared_data / "cad_trimesh" / name
        if p.exists():
            (src / name).write_bytes(p.read_bytes())
    archive = tmp_path / "set.ncgs"
    r = run_cli(
        "compress",
        str(src),
        "-o",
        str(archive),
        "--preset",
        "quick",
        "--width",
        "tiny",
        "--epochs",
        "30",
        "--resolution",
        "16",
        "--weight-bits",
        "7",
        "--no-ssim",
        "--tied-modules",
        "2",
    )
    assert r.returncode == 0, r.stderr[-400:]
    from necgs.compression import open_archive

    assert open_archive(archive).metadata["config"]["train"]["use_ssim"] is False  # quick's default is on
    info = run_cli("info", str(archive))
    assert info.returncode == 0 and "vs binary PLY" in info.stdout and "K=16 " in info.stdout
    assert "v1.2," in info.stdout and "first 2 modules tied" in info.stdout  # one module at both levels
    out = tmp_path / "out"
    d = run_cli("decompress", str(archive), "-o", str(out), "--format", "obj")
    assert d.returncode == 0 and len(list(out.glob("*.obj"))) == len(list(src.iterdir()))
    damaged = tmp_path / "damaged.ncgs"
    damaged.write_bytes(archive.read_bytes()[:-10])
    bad = run_cli("decompress", str(damaged), "-o", str(out))
    assert bad.returncode == 2 and "early" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_empty_shapes_warning_is_one_line_naming_the_archive(capsys):
    from necgs.commands.compress import warn_empty

    warn_empty("set.ncgs", [f"s{i}" for i in range(7)], 88)
    warn_empty("ok.ncgs", [], 88)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "set.ncgs: 7 of 88 shapes decode to no surface (s0, s1, s2, s3, s4, ...)"
    )
