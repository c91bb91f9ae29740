"""Priors: training, the file, compressing against one, finding it again, refusing the wrong one."""

from __future__ import annotations

import subprocess
import sys

import pytest

import necgs.priors.installed as installed
from necgs.coding.archive import MAGIC
from necgs.compression import compress, decompress, describe, shapes_without_surface
from necgs.config import PriorFitConfig
from necgs.errors import NecgsError
from necgs.io.datasets import resolve_dataset
from necgs.io.loading import load_meshes
from necgs.priors.installed import PriorMismatchError, PriorNotFoundError, find_prior, list_priors
from necgs.priors.ncgp import read_prior
from necgs.priors.training import PriorConfig, train_prior

TINY = PriorConfig(
    resolution=32,
    width=8,
    fit_iterations=0,
    steps=160,
    lr=5e-3,
    batch_size=8,
    blocks_per_shape=2,
    block_size=16,
    checkpoint_every=0,
    device="cpu",
)
FAST = PriorFitConfig(fit_iterations=0, visits=60, batch_size=8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A prior trained on 12 procedural figures (about a minute on 2 cores)."""
    folder = tmp_path_factory.mktemp("priors")
    path = folder / "figs.ncgp"
    figures = load_meshes(resolve_dataset("figures")).meshes[:12]
    src = tmp_path_factory.mktemp("figs")
    from necgs.io.loading import save_mesh

    for m in figures:
        save_mesh(m, src / f"{m.name}.ply")
    prior = train_prior([str(src)], path, TINY, name="figs", checkpoint_dir=folder / "ckpt")
    return prior


@pytest.fixture
def no_shipped(monkeypatch, tmp_path):
    """Only the priors a test installs are found."""
    monkeypatch.setattr(installed, "SHIPPED_DIR", tmp_path / "none")
    monkeypatch.setenv("NECGS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NECGS_PRIOR_DIRS", raising=False)


def held_out(n=2):
    """Figures the prior never saw (it was trained on the first 12)."""
    return load_meshes(resolve_dataset("figures")).meshes[12 : 12 + n]


def test_prior_file_is_versioned_hashed_and_records_its_data(tiny):
    data = tiny.path.read_bytes()
    assert data.startswith(MAGIC) and b"pickle" not in data
    again = read_prior(tiny.path)
    assert again.id == tiny.id and len(tiny.id) == 16
    assert again.card["trained_on"][0]["shapes"] == 12
    assert len(again.card["shape_names"]) == 12
    assert again.card["settings"]["steps"] == TINY.steps
    assert 0 < again.card["band_error_median"] < 1


def test_the_prior_ships_its_encoder_and_starts_new_shapes_from_it(tiny, tmp_path):
    import torch

    from necgs.geometry.fit import fit_volumes
    from necgs.priors.start import nearest_features, start_features

    again = read_prior(tiny.path)
    assert again.encoder_input == TINY.encoder_input == 16 and set(again.encoder) == set(tiny.encoder)
    for name, q in tiny.encoder.items():
        assert (again.encoder[name].symbols == q.symbols).all()
    volumes = fit_volumes(held_out(2), tiny.fit, progress=False).volumes.dense()
    start = start_features(again, volumes)
    assert start.shape == (2, *tiny.features.shape[1:])
    with torch.no_grad():
        assert torch.allclose(start, again.volume_encoder()(volumes))
    assert not torch.allclose(start, nearest_features(again, volumes))


def test_a_prior_without_an_encoder_starts_from_the_nearest_training_feature(tmp_path):
    from dataclasses import replace

    path = tmp_path / "ad.ncgp"
    ad = train_prior(
        [str(resolve_dataset("cad"))], path, replace(TINY, steps=8, encoder_input=None), checkpoint_dir=tmp_path / "c"
    )
    again = read_prior(path)
    assert ad.encoder is None and again.encoder is None and again.volume_encoder() is None
    assert again.card["settings"]["encoder_input"] is None


def test_an_encoder_that_does_not_fit_its_architecture_is_a_clear_error(tiny, tmp_path):
    from dataclasses import replace

    from necgs.errors import CorruptArchiveError
    from necgs.priors.ncgp import write_prior

    bad = replace(read_prior(tiny.path), encoder_input=8)  # tensors of a 16^3-input encoder
    write_prior(tmp_path / "bad.ncgp", bad)
    with pytest.raises(CorruptArchiveError, match="bad.ncgp: prior 'figs': its encoder tensors"):
        read_prior(tmp_path / "bad.ncgp")


def test_held_out_shapes_compress_against_the_prior_and_decode(tiny, tmp_path, no_shipped):
    out = tmp_path / "a.ncgs"
    r = compress(held_out(), out, prior=tiny.path, prior_fit=FAST)
    assert r.prior == {"name": "figs", "id": tiny.id}
    d = describe(out)
    assert d["version"] == "1.3" and d["weights_bytes"] == 0 and d["prior"]["id"] == tiny.id
    meshes = decompress(out, prior=tiny.path)
    assert len(meshes) == 2 and all(m.n_faces > 100 for m in meshes)
    assert not shapes_without_surface(out, prior=tiny.path)
    assert r.bytes < 1500  # features and shape records only


def test_decompress_finds_an_installed_prior_by_id(tiny, tmp_path, no_shipped, monkeypatch):
    out = tmp_path / "a.ncgs"
    compress(held_out(1), out, prior=tiny, prior_fit=FAST)
    with pytest.raises(PriorNotFoundError, match=tiny.id):
        decompress(out)
    monkeypatch.setenv("NECGS_PRIOR_DIRS", str(tiny.path.parent))
    assert [p["id"] for p in list_priors()] == [tiny.id]
    assert find_prior("figs").id == tiny.id
    assert len(decompress(out)) == 1


def test_a_retired_prior_still_decodes_its_archives_but_is_not_offered(tiny, tmp_path, monkeypatch):
    """A shipped prior moved to retired/ (renamed; the id is unchanged) keeps old archives decodable."""
    from dataclasses import replace

    from necgs.priors.ncgp import write_prior

    out = tmp_path / "a.ncgs"
    compress(held_out(1), out, prior=tiny, prior_fit=FAST)
    shipped = tmp_path / "shipped"
    (shipped / "retired").mkdir(parents=True)
    write_prior(shipped / "retired" / "figs-old.ncgp", replace(tiny, name="figs-old"))
    monkeypatch.setattr(installed, "SHIPPED_DIR", shipped)
    monkeypatch.setenv("NECGS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NECGS_PRIOR_DIRS", raising=False)
    assert list_priors() == []
    assert find_prior("figs-old").id == tiny.id
    assert len(decompress(out)) == 1
    with pytest.raises(PriorNotFoundError, match="no prior named 'figs'"):
        find_prior("figs")


def test_a_mismatched_prior_is_refused(tiny, tmp_path, no_shipped):
    other_path = tmp_path / "other.ncgp"
    from dataclasses import replace

    other = train_prior(
        [str(resolve_dataset("cad"))], other_path, replace(TINY, steps=8, seed=3), checkpoint_dir=tmp_path / "c"
    )
    assert other.id != tiny.id
    out = tmp_path / "a.ncgs"
    compress(held_out(1), out, prior=tiny, prior_fit=FAST)
    with pytest.raises(PriorMismatchError, match="compressed against prior 'figs'"):
        decompress(out, prior=other_path)


def test_a_single_mesh_file_is_a_valid_input(tiny, tmp_path, no_shipped):
    from necgs.io.loading import save_mesh

    mesh = held_out(1)[0]
    path = tmp_path / "one.ply"
    save_mesh(mesh, path)
    r = compress(path, tmp_path / "one.ncgs", prior=tiny, prior_fit=FAST)
    assert r.names == ["one"] and not r.empty_shapes
    assert decompress(tmp_path / "one.ncgs", prior=tiny)[0].n_faces > 100


def test_damaged_or_foreign_prior_files_give_clear_errors(tiny, tmp_path, no_shipped):
    data = bytearray(tiny.path.read_bytes())
    data[-10] ^= 0xFF
    bad = tmp_path / "bad.ncgp"
    bad.write_bytes(bytes(data))
    with pytest.raises(NecgsError, match="bad.ncgp"):
        read_prior(bad)
    archive = tmp_path / "a.ncgs"
    compress(held_out(1), archive, prior=tiny, prior_fit=FAST)
    with pytest.raises(NecgsError, match="not a necgs prior"):
        read_prior(archive)
    with pytest.raises(PriorNotFoundError, match="no prior named 'nosuch'"):
        find_prior("nosuch")


def test_prior_auto_picks_one_and_says_which(tiny, tmp_path, no_shipped, monkeypatch):
    from necgs.settings import preset

    monkeypatch.setenv("NECGS_PRIOR_DIRS", str(tiny.path.parent))
    out = tmp_path / "auto.ncgs"
    cfg = preset("quick", epochs=2, resolution=16, device="cpu")
    r = compress(held_out(2), out, cfg, prior="auto", prior_fit=FAST)
    assert out.is_file() and r.path == out
    assert r.notes and r.notes[0].startswith("picked")
    picked_prior = "prior 'figs'" in r.notes[0].split(":")[0]
    assert (describe(out)["prior"] is not None) == picked_prior


def run_cli(*args, env=None):
    import os

    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "necgs", *args], capture_output=True, text=True, timeout=600, env=full)


def test_cli_prior_train_list_info_compress_decompress(tmp_path):
    src = tmp_path / "figs"
    src.mkdir()
    from necgs.io.loading import save_mesh

    for m in load_meshes(resolve_dataset("figures")).meshes[:4]:
        save_mesh(m, src / f"{m.name}.ply")
    env = {"NECGS_PRIOR_DIRS": str(tmp_path / "priors"), "NECGS_CACHE_DIR": str(tmp_path / "cache")}
    (tmp_path / "priors").mkdir()
    p = tmp_path / "priors" / "mini.ncgp"
    r = run_cli(
        "prior",
        "train",
        str(src),
        "-o",
        str(p),
        "--steps",
        "4",
        "--resolution",
        "16",
        "--width",
        "4",
        "--fit-iterations",
        "0",
        "--features",
        "2x8",
        "--augment",
        "mirror",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "prior 'mini'" in r.stdout and p.is_file()
    names = read_prior(p).card["shape_names"]
    assert len(names) == 8 and sum(n.endswith("/mirror") for n in names) == 4  # each figure and its mirror image
    r = run_cli("prior", "list", env=env)
    assert r.returncode == 0 and "mini" in r.stdout
    r = run_cli("prior", "info", "mini", env=env)
    assert r.returncode == 0 and "trained on" in r.stdout and "4 shapes" in r.stdout
    assert "features 2x8^3" in r.stdout and "augmented: mirror" in r.stdout
    one = src / sorted(x.name for x in src.iterdir())[0]
    r = run_cli("compress", str(one), "-o", str(tmp_path / "o.ncgs"), "--prior", "mini", env=env)
    assert r.returncode == 0, r.stderr
    assert "uses prior 'mini'" in r.stdout
    r = run_cli("info", str(tmp_path / "o.ncgs"), env=env)
    assert "in prior 'mini'" in r.stdout
    r = run_cli("decompress", str(tmp_path / "o.ncgs"), "-o", str(tmp_path / "dec"), env=env)
    assert r.returncode == 0, r.stderr
    r = run_cli(
        "decompress", str(tmp_path / "o.ncgs"), "-o", str(tmp_path / "dec"), env={**env, "NECGS_PRIOR_DIRS": ""}
    )
    assert r.returncode == 2 and "needs prior 'mini'" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("compress", str(one), "-o", str(tmp_path / "x.ncgs"), "--prior", "nosuch", env=env)
    assert r.returncode == 2 and "no prior named 'nosuch'" in r.stderr
    tuned = tmp_path / "t.ncgs"
    r = run_cli("compress", str(one), "-o", str(tuned), "--prior", "mini", "--fine-tune", "3", env=env)
    assert r.returncode == 0, r.stderr
    r = run_cli("info", str(tuned), env=env)
    assert "v1.4" in r.stdout and "plus a fine-tuned delta of" in r.stdout
    r = run_cli("decompress", str(tuned), "-o", str(tmp_path / "dec2"), env=env)
    assert r.returncode == 0 and len(list((tmp_path / "dec2").iterdir())) == 1, r.stderr
    coarse = tmp_path / "c.ncgs"
    r = run_cli(
        "compress", str(one), "-o", str(coarse), "--prior", "mini", "--fine-tune", "3", "--delta-step", "16", env=env
    )
    assert r.returncode == 0, r.stderr
    assert coarse.stat().st_size < tuned.stat().st_size  # a coarser delta step codes fewer bytes
    r = run_cli("compress", str(one), "-o", str(tmp_path / "z.ncgs"), "--prior", "mini", "--delta-step", "16", env=env)
    assert r.returncode == 2 and "give --fine-tune too" in r.stderr and not (tmp_path / "z.ncgs").exists()
    r = run_cli("compress", str(one), "-o", str(tmp_path / "z.ncgs"), "--prior", "mini", "--lambda-rate", "8", env=env)
    assert r.returncode == 2 and "delta's rate: give --fine-tune too" in r.stderr and not (tmp_path / "z.ncgs").exists()
    r = run_cli("compress", str(one), "-o", str(tmp_path / "y.ncgs"), "--fine-tune", env=env)
    assert r.returncode == 2 and "give --prior NAME|PATH" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "y.ncgs").exists()
    r = run_cli("prior", "train", str(src), "-o", str(tmp_path / "bad.ncgp"), "--features", "8by4", env=env)
    assert r.returncode == 2 and "--features must be CxK'" in r.stderr and "'8by4'" in r.stderr
    assert not (tmp_path / "bad.ncgp").exists()


def test_add_grows_a_prior_archive_against_the_same_prior(tiny, tmp_path, no_shipped):
    from necgs.compression import add_shapes, open_archive

    first = tmp_path / "a.ncgs"
    compress(held_out(1), first, prior=tiny, prior_fit=FAST)
    more = load_meshes(resolve_dataset("figures")).meshes[20:21]
    grown = add_shapes(first, more, tmp_path / "b.ncgs", epochs=20, prior=tiny)
    assert len(grown.names) == 2
    with open_archive(first, prior=tiny) as a, open_archive(tmp_path / "b.ncgs", prior=tiny) as b:
        assert b.reader.version == (1, 3) and b.prior_ref["id"] == tiny.id
        assert (a.feature_symbols(0) == b.feature_symbols(0)).all()
    assert len(decompress(tmp_path / "b.ncgs", prior=tiny)) == 2


def test_cli_prior_train_in_the_background_writes_a_log_and_the_prior(tmp_path):
    import time

    env = {"NECGS_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "bg.ncgp"
    r = run_cli(
        "prior", "train", "cad", "-o", str(out), "--steps", "2", "--resolution", "16", "--width", "4",
        "--fit-iterations", "0", "--background", env=env,
    )  # fmt: skip
    assert r.returncode == 0 and "background" in r.stdout and str(out) + ".log" in r.stdout
    deadline = time.time() + 300
    while not out.is_file() and time.time() < deadline:
        time.sleep(2)
    assert out.is_file(), (tmp_path / "bg.ncgp.log").read_text()[-2000:]
    assert read_prior(out).card["trained_on"][0]["source"] == "cad"


def test_the_tool_says_when_a_prior_fits_badly(tiny):
    from dataclasses import replace as dc_replace

    import numpy as np

    from necgs.compression.with_prior import BAND_ERROR_LIMIT, prior_fit_note

    good = dc_replace(tiny, card={**tiny.card, "band_error_median": 0.05})
    assert prior_fit_note(good, np.array([0.06, 0.08]), 0) is None
    assert "fits these shapes badly" in prior_fit_note(good, np.array([0.15, 0.12]), 0)  # twice its own
    assert "1 without surface" in prior_fit_note(good, np.array([0.06]), 1)
    weak = dc_replace(tiny, card={**tiny.card, "band_error_median": 0.47})  # a prior that fits nothing well
    assert prior_fit_note(weak, np.array([BAND_ERROR_LIMIT + 0.05]), 0) is not None


def test_a_fine_tuned_delta_decodes_closer_is_coded_and_refused_by_add(tiny, tmp_path, no_shipped):
    from necgs.compression import add_shapes, open_archive
    from necgs.metrics import compare_meshes

    shapes = held_out(1)
    plain, tuned = tmp_path / "plain.ncgs", tmp_path / "tuned.ncgs"
    compress(shapes, plain, prior=tiny, prior_fit=FAST)
    events = []
    r = compress(
        shapes,
        tuned,
        prior=tiny,
        prior_fit=PriorFitConfig(fit_iterations=0, fine_tune_visits=60, fine_tune_steps=60),
        progress=lambda stage, done, total, detail="": events.append((stage, done, total, detail)),
    )
    train = [(d, t) for stage, d, t, _ in events if stage == "train"]
    assert train[-1] == (120, 120) and all(a[0] <= b[0] for a, b in zip(train, train[1:]))
    assert any("fine-tune" in detail for *_, detail in events)
    d = describe(tuned)
    assert d["version"] == "1.4" and d["prior"]["id"] == tiny.id and 0 < d["weights_bytes"] < r.bytes
    cd = [compare_meshes(decompress(p, prior=tiny)[0], shapes[0], 20_000).cd for p in (plain, tuned)]
    assert cd[1] < 0.8 * cd[0], cd
    with open_archive(tuned, prior=tiny) as arc:
        assert arc.has_delta and set(arc.delta()) == set(dict(arc.decoder().named_parameters()))
    with pytest.raises(NecgsError, match="fine-tuned decoder delta"):
        add_shapes(tuned, held_out(2)[1:], tmp_path / "grown.ncgs", epochs=5, prior=tiny)
    assert not (tmp_path / "grown.ncgs").exists()


def test_a_reader_that_ignores_the_delta_refuses_the_archive(tiny, tmp_path, no_shipped, monkeypatch):
    """A 1.3 reader looks for "prior" or "weights"; a delta archive has neither, so it fails loudly."""
    from necgs.compression.decode import OpenedArchive
    from necgs.errors import CorruptArchiveError

    out = tmp_path / "tuned.ncgs"
    compress(held_out(1), out, prior=tiny, prior_fit=PriorFitConfig(fit_iterations=0, visits=5, fine_tune_steps=2))
    monkeypatch.setattr(OpenedArchive, "prior_ref", property(lambda self: self.metadata.get("prior")))
    monkeypatch.setattr(OpenedArchive, "has_delta", property(lambda self: False))
    with pytest.raises(CorruptArchiveError, match="decoder does not match"):
        decompress(out, prior=tiny)


def test_a_malformed_or_missing_delta_is_a_clear_error(tiny, tmp_path, no_shipped):
    import json

    from necgs.coding.archive import ArchiveReader, Section, write_archive
    from necgs.coding.codec_archive import DELTA_MINOR
    from necgs.errors import CorruptArchiveError

    out = tmp_path / "tuned.ncgs"
    compress(held_out(1), out, prior=tiny, prior_fit=PriorFitConfig(fit_iterations=0, visits=5, fine_tune_steps=2))
    reader = ArchiveReader(out)
    meta = json.loads(json.dumps(reader.metadata))
    sections = [Section(n, reader.read_section(n), reader.section_info(n).info) for n in reader.section_names()]
    reader.close()
    for name, changed, kept in (
        ("ref.ncgs", {**meta, "prior_delta": "x"}, sections),
        ("nodelta.ncgs", meta, [x for x in sections if x.name != "delta"]),
    ):
        write_archive(tmp_path / name, changed, kept, DELTA_MINOR)
        with pytest.raises(CorruptArchiveError, match=name):
            decompress(tmp_path / name, prior=tiny)


@pytest.mark.parametrize(
    "field, value",
    [
        ("fine_tune_steps", -1),
        ("delta_multiple", 0),
        ("delta_bits", 1),
        ("band_fraction", 1.5),
        ("fine_tune_band_fraction", -0.1),
        ("fine_tune_lambda_rate", -1.0),
    ],
)
def test_fitting_and_fine_tuning_settings_out_of_range_are_refused(field, value):
    from necgs.errors import ConfigError

    with pytest.raises(ConfigError, match="must be in"):
        PriorFitConfig(**{field: value})
