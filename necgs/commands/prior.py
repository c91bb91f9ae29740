"""``necgs prior train|list|info``: pretrained decoders shared by many archives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from necgs.commands._common import add_device, warn
from necgs.errors import ConfigError
from necgs.settings import parse_width


def register(sub) -> None:
    p = sub.add_parser("prior", help="train, list and inspect priors (pretrained decoders)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    t = actions.add_parser("train", help="pretrain a decoder on one or more corpora (resumable)")
    t.add_argument("sources", nargs="+", help="data set names (humans_ama, humans_ama/crane...), folders or zips")
    t.add_argument("-o", "--output", required=True, help="prior file to write (.ncgp)")
    t.add_argument("--name", help="the prior's name (default: the output's stem)")
    t.add_argument("--steps", type=int, help="training steps (default 8000)")
    t.add_argument("--width", help="decoder size (default small)")
    t.add_argument("--resolution", type=int, help="volume resolution K (default 64)")
    t.add_argument("--lr", type=float, help="peak learning rate (default 5e-3)")
    t.add_argument("--fit-iterations", type=int, help="fitting iterations per training shape (default 30)")
    t.add_argument("--features", metavar="CxK'", help="channels and side of each shape's feature (default 1x8)")
    t.add_argument(
        "--no-encoder",
        action="store_true",
        help="train an auto-decoder prior (new shapes start from the nearest training feature, not an encoder's)",
    )
    t.add_argument(
        "--augment",
        choices=["none", "mirror", "turns"],
        help="also train on exact copies of each shape: its mirror image (mirror), and both in 4 quarter turns "
        "about the up axis (turns; 8 copies); default none",
    )
    t.add_argument("--init", help="fine-tune from this prior (name or path) instead of a random decoder")
    t.add_argument("--checkpoint-dir", help="checkpoints (default: a cache folder named after the output)")
    t.add_argument("--background", action="store_true", help="run detached; progress goes to OUTPUT.log")
    add_device(t)
    t.set_defaults(func=run_train)

    ls = actions.add_parser("list", help="installed priors (shipped, NECGS_PRIOR_DIRS, cache)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)

    info = actions.add_parser("info", help="describe a prior: id, size, what it was trained on")
    info.add_argument("prior", help="name or path")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=run_info)


def parse_features(text: str) -> tuple[int, int]:
    """``"CxK'"`` as (channels, side); a ``ConfigError`` naming the value otherwise."""

    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"--features must be CxK' (channels x side, e.g. 1x8), got {text!r}")
    return int(parts[0]), int(parts[1])


def _config(args):
    # imported when the command runs: keeps torch and trimesh off `necgs --help`
    from necgs.priors.training import PriorConfig

    cfg = PriorConfig(device=args.device)
    changes = {
        "steps": args.steps,
        "width": parse_width(args.width),
        "resolution": args.resolution,
        "lr": args.lr,
        "fit_iterations": args.fit_iterations,
        "augment": args.augment,
    }
    if args.features:
        changes["feature_channels"], changes["feature_resolution"] = parse_features(args.features)
    cfg = replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    if args.no_encoder:
        cfg = replace(cfg, encoder_input=None)
    cfg.decoder()
    cfg.fit()
    cfg.train(1)
    return cfg


def run_train(args) -> int:
    cfg = _config(args)  # refuse bad settings before detaching
    if args.background:
        log = Path(f"{args.output}.log")
        argv = [a for a in sys.argv[1:] if a != "--background"]
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "necgs.cli", *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=os.environ.copy(),
            )
        print(f"training in the background (pid {proc.pid}); progress in {log}; rerun the same command to resume")
        return 0
    # imported when the command runs: keeps torch and trimesh off `necgs --help`
    from necgs.priors.installed import find_prior
    from necgs.priors.training import train_prior

    init = find_prior(args.init) if args.init else None

    def progress(stage: str, done: int, total: int, detail: str) -> None:
        if stage == "train" and (done % 10 == 0 or done == total):
            print(f"train {done}/{total} epochs {detail}", flush=True)

    prior = train_prior(
        args.sources,
        args.output,
        cfg,
        name=args.name,
        init=init,
        checkpoint_dir=args.checkpoint_dir,
        progress=progress,
    )
    d = prior.describe()
    print(f"{args.output}: prior {d['name']!r} id {d['id']}, {d['bytes']} bytes, {d['training_shapes']} shapes")
    return 0


def run_list(args) -> int:
    # imported when the command runs: keeps torch and trimesh off `necgs --help`
    from necgs.priors.installed import list_priors, prior_dirs

    priors = list_priors()
    if args.json:
        print(json.dumps(priors, indent=2))
        return 0
    if not priors:
        warn(f"no prior installed (looked in {', '.join(str(d) for d in prior_dirs())})")
    for p in priors:
        print(
            f"{p['name']:<12} id {p['id']}  K={p['resolution']}  {p['bytes'] / 1e6:.2f} MB  "
            f"trained on {', '.join(p['trained_on'])}  ({p['file']})"
        )
    return 0


def run_info(args) -> int:
    # imported when the command runs: keeps torch and trimesh off `necgs --help`
    from necgs.priors.installed import find_prior

    d = find_prior(args.prior).describe()
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    card = d["card"]
    print(f"{d['file']}: prior {d['name']!r}, id {d['id']}, {d['bytes']} bytes")
    s = card.get("settings", {})
    features = f", features {s['feature_channels']}x{s['feature_resolution']}^3" if "feature_channels" in s else ""
    print(f"  decoder  K={d['resolution']}, {d['decoder_parameters']} parameters{features}")
    for t in card.get("trained_on", []):
        print(f"  trained on {t['source']}: {t['shapes']} shapes")
    if s:
        print(
            f"  settings {s.get('steps')} steps, width {s.get('width')}, lr {s.get('lr')}, "
            f"{s.get('batch_size')} shapes x {s.get('blocks_per_shape')} blocks of {s.get('block_size')}^3 per step"
            + (f", augmented: {s['augment']}" if s.get("augment", "none") != "none" else "")
        )
    if card.get("train_seconds") is not None:
        print(f"  took     fit {card.get('fit_seconds')} s, train {card.get('train_seconds')} s")
    if card.get("band_error_median") is not None:
        print(f"  band error on its training shapes: median {card['band_error_median']:.4f}")
    return 0
