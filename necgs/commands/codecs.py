"""``necgs codecs``: every codec ``necgs evaluate`` knows, and whether it runs here (if not, why)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("codecs", help="list the codecs `necgs evaluate` compares, and which of them run here")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported when the command runs: keeps torch and trimesh off `necgs --help`
    from necgs.baselines.base import codec_names, get_codec

    print(f"{'name':16s}{'runs here':11s}codec")
    for name in codec_names():
        codec = get_codec(name)
        ok, why = codec.available()
        print(f"{name:16s}{'yes' if ok else 'no':11s}{codec.label}" + ("" if ok else f" -- {why}"))
    return 0
