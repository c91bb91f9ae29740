"""The real pipeline end to end on tiny inputs: compress, decompress, info, add, damage."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from necgs.coding.codec_archive import shape_record, write_codec_archive
from necgs.compression import add_shapes, compress, decompress, describe, shapes_without_surface
from necgs.config import FitConfig, NecgsConfig, TrainConfig
from necgs.errors import ArchiveError, NecgsError
from necgs.io.mesh import Mesh, Transform
from necgs.io.ply import binary_ply_bytes
from necgs.metrics import compare_meshes
from necgs.training.train import train_autodecoder

FIXTURE = Path(__file__).parent.parent / "data" / "v1_small.ncgs"
FIXTURE_1_1 = Path(__file__).parent.parent / "data" / "v1_1_small.ncgs"
TINY = NecgsConfig(
    fit=FitConfig(resolution=16, iterations=20, samples=3000),
    width=8,
    train=TrainConfig(epochs=150, lr=1e-2, checkpoint_every=0),
)


def tori(n=3, offset=0.0):
    out = []
    for i in range(n):
        t = trimesh.creation.torus(
            major_radius=1 + 0.1 * i + offset, minor_radius=0.3, major_sections=32, minor_sections=16
        )
        out.append(Mesh(t.vertices * 3 + 5, t.faces, f"torus{i}"))
    return out


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("pipe") / "set.ncgs"
    result = compress(tori(), path, TINY, progress=lambda *a: None)
    return path, result


def test_round_trip_quality_and_original_coordinates(archive):
    path, result = archive
    assert result.bytes == path.stat().st_size and result.names == ["torus0", "torus1", "torus2"]
    assert result.empty_shapes == [] and result.seconds["check"] >= 0
    decoded = decompress(path)
    for rec, gt in zip(decoded, tori()):
        m = compare_meshes(rec, gt, 20_000)
        assert m.cd < 0.03 and m.nc > 0.85, m  # a broken pipeline lands far above this
        assert np.allclose(rec.vertices.mean(0), gt.vertices.mean(0), atol=0.2)  # back in original coordinates


def test_single_shape_decodes_alone_and_identically(archive, tmp_path):
    path, _ = archive
    full = decompress(path)
    one = decompress(path, tmp_path / "out", shapes=["torus1"], fmt="obj")
    assert np.array_equal(one[0].vertices, full[1].vertices)
    assert (tmp_path / "out" / "torus1.obj").is_file()
    with pytest.raises(NecgsError, match="no shape named"):
        decompress(path, shapes=["missing"])


def test_describe_reports_sizes_and_ratio(archive):
    path, _ = archive
    d = describe(path)
    parts = d["header_bytes"] + d["weights_bytes"] + d["feature_bytes"] + d["feature_model_bytes"]
    assert parts == d["bytes"] == path.stat().st_size
    assert d["n_shapes"] == 3 and d["ratio_ply"] > 1 and d["coders"]["weights"] in ("rans", "huffman", "raw")


def test_add_keeps_old_shapes_bit_identical(archive, tmp_path):
    path, _ = archive
    new = [Mesh(m.vertices, m.faces, f"new{i}") for i, m in enumerate(tori(1, offset=0.05))]
    grown = tmp_path / "grown.ncgs"
    add_shapes(path, new, grown, epochs=40)
    before, after = decompress(path), decompress(grown)
    assert [m.name for m in after] == ["torus0", "torus1", "torus2", "new0"]
    assert all(
        np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces) for a, b in zip(before, after)
    )
    assert compare_meshes(after[3], new[0], 20_000).cd < 0.05
    d = describe(grown)
    assert d["batches"][-1]["mode"] == "frozen-decoder" and d["shapes"][3]["batch"] == 1
    with pytest.raises(NecgsError, match="already in the archive"):
        add_shapes(path, tori(1), tmp_path / "clash.ncgs")


def test_damaged_archives_raise_only_archive_errors(archive):
    path, _ = archive
    blob = path.read_bytes()
    rng = np.random.default_rng(0)
    for n in sorted(set(rng.integers(0, len(blob), 40).tolist()) | {0, 7, 19, len(blob) - 1}):
        with pytest.raises(ArchiveError):
            decompress(blob[:n])
    for i in rng.integers(0, len(blob), 60).tolist():
        damaged = bytearray(blob)
        damaged[i] ^= 1 << int(rng.integers(8))
        try:
            decompress(bytes(damaged))
        except ArchiveError:
            pass


@pytest.mark.parametrize("fixture", [FIXTURE, FIXTURE_1_1])
def test_committed_old_archives_still_decode(fixture):
    """tests/data/v1_small.ncgs (format 1.0) and v1_1_small.ncgs (1.1, written by the code before
    1.2: JSON shape records, one section per feature); future readers must decode both."""
    expected = json.loads(fixture.with_suffix(".json").read_text())
    assert describe(fixture)["version"] == ("1.0" if fixture == FIXTURE else "1.1")
    decoded = decompress(fixture)
    assert [m.name for m in decoded] == expected["names"]
    assert [m.n_faces for m in decoded] == expected["faces"]
    for m, centroid in zip(decoded, expected["centroids"]):
        assert np.allclose(m.vertices.mean(0), centroid, atol=1e-4)


def test_add_to_a_1_1_archive_keeps_its_layout_and_old_shapes(tmp_path):
    grown = tmp_path / "grown.ncgs"
    new = [Mesh(m.vertices, m.faces, "set/new0") for m in tori(1, offset=0.05)]
    add_shapes(FIXTURE_1_1, new, grown, epochs=3)
    d = describe(grown)
    assert d["version"] == "1.1" and [s["name"] for s in d["shapes"]][-1] == "set/new0"
    before, after = decompress(FIXTURE_1_1), decompress(grown)
    assert all(np.array_equal(a.vertices, b.vertices) for a, b in zip(before, after))


def test_add_to_damaged_or_foreign_archive_fails_before_work(archive, tmp_path, monkeypatch):
    import necgs.compression.grow as grow

    path, _ = archive
    monkeypatch.setattr(grow, "fit_volumes", lambda *a, **k: pytest.fail("work started"))
    damaged = tmp_path / "damaged.ncgs"
    damaged.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ArchiveError, match="early"):
        add_shapes(damaged, tori(1), tmp_path / "out.ncgs")
    from necgs.coding.archive import Section, write_archive

    foreign = tmp_path / "foreign.ncgs"
    write_archive(foreign, {"format": "quantdeepsdf"}, [Section("x", b"1")])
    with pytest.raises(ArchiveError, match="not a necgs mesh-set archive"):
        add_shapes(foreign, tori(1), tmp_path / "out.ncgs")


def test_surface_check_flags_a_decoder_trained_on_empty_volumes(tmp_path):
    """Volumes with TSDF 0.5 everywhere (no surface): the trained archive decodes to nothing."""
    volumes = torch.zeros(2, 4, 16, 16, 16)
    volumes[:, 0] = 0.5
    codec = train_autodecoder(
        volumes, TINY.decoder(), TrainConfig(epochs=60, lr=1e-2, checkpoint_every=0), progress=False
    )
    shapes = [shape_record(m, Transform(), 1000, batch=0) for m in tori(2)]
    write_codec_archive(tmp_path / "empty.ncgs", TINY.to_dict(), codec, shapes)
    assert shapes_without_surface(tmp_path / "empty.ncgs") == ["torus0", "torus1"]
    assert all(len(m.faces) == 0 for m in decompress(tmp_path / "empty.ncgs"))


def test_block_sparse_decode_of_a_trained_archive_gives_the_dense_mesh(archive):
    from necgs.compression import open_archive
    from necgs.geometry.dmc import mesh_from_volume
    from necgs.model.blocks import decode_sparse

    path, _ = archive
    with open_archive(path) as arc:
        decoder = arc.decoder("cpu")
        for i, gt in enumerate(tori()):
            features = arc.feature(i)[None]
            back = Transform.from_dict(arc.shapes[i]["transform"])
            with torch.no_grad():
                dense = mesh_from_volume(decoder(features)[0]).transformed(back, inverse=True)
            sparse = mesh_from_volume(decode_sparse(decoder, features, size=4)[0]).transformed(back, inverse=True)
            assert sparse.n_faces > 100
            cd_dense = compare_meshes(dense, gt, 20_000).cd
            cd_sparse = compare_meshes(sparse, gt, 20_000).cd
            assert cd_dense < 0.03 and abs(cd_dense - cd_sparse) < 1e-4, (cd_dense, cd_sparse)


def test_target_rate_trains_a_second_setting_when_the_first_misses(tmp_path, monkeypatch):
    """A table row that overstates its weights 2.5x misses the ratio; the measured correction
    names another width, which is trained and kept because it lands nearer."""
    import functools
    from dataclasses import replace

    from necgs import target_rate
    from necgs.target_rate import RatePoint

    overstated, wider = RatePoint(8, 6, 0.0, 12.0, 300.0, 2e-2), RatePoint(12, 6, 0.0, 11.0, 300.0, 1e-2)
    table = (overstated, wider)
    monkeypatch.setattr(target_rate, "plan_rate", functools.partial(target_rate.plan_rate, table=table))
    monkeypatch.setattr(target_rate, "replan", functools.partial(target_rate.replan, table=table))
    cfg = replace(TINY, train=replace(TINY.train, epochs=60))
    meshes = tori()
    ply = sum(binary_ply_bytes(m) for m in meshes)
    asked = ply / target_rate.predict_bytes(cfg, overstated, meshes)
    path = tmp_path / "rated.ncgs"
    result = compress(meshes, path, cfg, progress=lambda *a: None, target_ratio=asked)
    assert result.rate_plan.point == wider and result.rate_plan.weight_scale < 1
    assert any("trained a second one" in n for n in result.notes), result.notes
    assert result.bytes == path.stat().st_size and not list(tmp_path.glob("*.second-pass"))
    assert abs(result.ratio_ply / asked - 1) < 0.5  # the first archive was about 2.5x off
    assert describe(path)["decoder"]["widths"] == list(replace(cfg, width=12).decoder().widths)
    assert len(decompress(path)) == 3
