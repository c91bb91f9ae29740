"""Checkpoints of one process and of a rank, and training on shards: two gloo processes on this machine,
each holding only its own shapes' volumes, agree on the epoch to resume and give rank 0 the whole set."""

import json
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from necgs.config import TrainConfig
from necgs.errors import ConfigError
from necgs.model.decoder import decoder_config
from necgs.training import sharding
from necgs.training.checkpoints import load_checkpoint, save_checkpoint, saved_epochs
from necgs.training.train import train_shard


def spheres(K: int, radii) -> torch.Tensor:
    g = torch.linspace(-1, 1, K)
    r = torch.stack(torch.meshgrid(g, g, g, indexing="ij")).norm(dim=0)
    return torch.stack(
        [torch.cat([((r - a) / (4 / (K - 1))).clamp(-1, 1)[None], torch.zeros(3, K, K, K)]) for a in radii]
    )


def test_a_rank_keeps_its_last_two_checkpoints_and_one_process_its_last(tmp_path):
    state = {"x": torch.arange(3.0)}
    for epoch in (5, 10, 15):
        save_checkpoint(tmp_path, ".rank1of2", "abc", epoch, {"x": state["x"] + epoch}, [1.0] * epoch, 2.0, keep=2)
    assert saved_epochs(tmp_path, ".rank1of2", "abc", keep=2) == [10, 15]
    assert not list(tmp_path.glob("checkpoint.rank1of2.epoch5.*"))
    loaded, losses, seconds = load_checkpoint(tmp_path, ".rank1of2", "abc", 10, keep=2)
    assert torch.equal(loaded["x"], state["x"] + 10) and len(losses) == 10 and seconds == 2.0
    assert saved_epochs(tmp_path, ".rank1of2", "another run", keep=2) == []
    assert saved_epochs(tmp_path, ".rank0of2", "abc", keep=2) == []
    (tmp_path / "checkpoint.rank1of2.epoch15.pt").unlink()  # a sidecar without its tensors is no checkpoint
    assert saved_epochs(tmp_path, ".rank1of2", "abc", keep=2) == [10]

    for epoch in (5, 10):
        save_checkpoint(tmp_path, "", "abc", epoch, state, [0.5], keep=1)
    assert saved_epochs(tmp_path, "", "abc") == [10] and (tmp_path / "checkpoint.pt").is_file()
    assert json.loads((tmp_path / "checkpoint.json").read_text())["epoch"] == 10
    assert load_checkpoint(tmp_path, "", "abc", 5) is None  # only the last is kept


VOLUMES = spheres(16, [0.35, 0.45, 0.55, 0.65, 0.75])
TCFG = TrainConfig(epochs=30, lr=1e-2, batch_size=3, checkpoint_every=10, device="cpu", mode="dense")
DCFG = decoder_config(16, 6, feature_channels=4)


def _rank(rank: int, world: int, store: str, folder: str, out: str) -> None:
    torch.set_num_threads(1)  # two processes on a shared machine: threads of one would wait on the other's
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        mine = VOLUMES[sharding.shard_of(len(VOLUMES), rank, world)]
        try:  # rank 0 holds 3 volumes, rank 1 none: neither is its share of 3 shapes
            train_shard(VOLUMES[: 3 * (1 - rank)], DCFG, TCFG, progress=False)
        except ConfigError as exc:
            Path(out, f"refused{rank}").write_text(str(exc))
        if rank == 1:  # rank 1 was killed before its last checkpoint: both must resume from epoch 20
            Path(folder, "checkpoint.rank1of2.epoch30.json").unlink(missing_ok=True)
        epochs = [20, 30] if rank == 0 else [10, 20]
        Path(out, f"agreed{rank}").write_text(str(sharding.agreed_epoch(epochs)))
        codec = train_shard(mine, DCFG, TCFG, checkpoint_dir=Path(folder), progress=False)
        if codec is not None:
            with torch.no_grad():
                decoded = codec.decoder()(codec.features.value())
            saved = {
                "features": codec.features.value(),
                "decoded": decoded,
                "resumed": torch.tensor(codec.resumed_from),
            }
            torch.save(saved, f"{out}/r0.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _run_ranks(tmp_path: Path, tag: str) -> dict:
    out = tmp_path / tag
    out.mkdir()
    mp.spawn(_rank, args=(2, str(tmp_path / f"store{tag}"), str(tmp_path / "ckpt"), str(out)), nprocs=2)
    return torch.load(out / "r0.pt", weights_only=True) | {"out": out}


def test_two_ranks_train_their_own_shapes_and_resume_together(tmp_path):
    first = _run_ranks(tmp_path, "first")
    out = first["out"]
    assert "holds 3 volumes" in (out / "refused0").read_text()
    assert "every rank needs at least one" in (out / "refused1").read_text()
    assert (out / "agreed0").read_text() == (out / "agreed1").read_text() == "20"
    features = first["features"]
    assert features.shape == (5, 4, 4, 4, 4) and int(first["resumed"]) == 0
    signs = (first["decoded"][:, 0] > 0) == (VOLUMES[:, 0] > 0)
    for i in range(5):  # every shape's feature was trained, by its own rank, and lands in its row
        assert float(signs[i].float().mean()) > 0.95, i
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.json")) == [
        f"checkpoint.rank{r}of2.epoch{e}.json" for r in range(2) for e in (20, 30)
    ]
    again = _run_ranks(tmp_path, "again")  # rank 1 lost epoch 30: both resume from 20 and end where they did
    assert int(again["resumed"]) == 20 and torch.allclose(again["features"], features, atol=1e-5)
