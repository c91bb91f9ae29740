"""Shared fixtures: the real meshes beside the checkout and an isolated cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from necgs.paths import shared_data_dir


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """The test session writes caches under pytest's temp folder, never ~/.cache."""
    os.environ["NECGS_CACHE_DIR"] = str(tmp_path_factory.getbasetemp() / "necgs-cache")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (the real mesh sets); tests that need it fail loudly without it."""
    path = shared_data_dir()
    if path is None:
        raise RuntimeError("../shared/data is missing: the real mesh sets must sit beside the checkout")
    return path


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_priors() -> Path | None:
    """The folder of priors the app of a test module sees (a module overrides this); None: as installed."""
    return None


@pytest.fixture(scope="module")
def app_url(app_priors):
    """The Gradio app served on 127.0.0.1 for one test module (with only ``app_priors``' priors, if given)."""
    from necgs.priors import installed
    from necgs.webapp import build_demo

    saved = os.environ.get("NECGS_PRIOR_DIRS"), installed.SHIPPED_DIR
    if app_priors is not None:
        os.environ["NECGS_PRIOR_DIRS"] = str(app_priors)
        installed.SHIPPED_DIR = installed.SHIPPED_DIR / "not-here"  # the choices are the test's, whatever ships
    demo = build_demo()
    port = free_port()
    demo.queue(default_concurrency_limit=1).launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, show_error=True
    )
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    if saved[0] is None:
        os.environ.pop("NECGS_PRIOR_DIRS", None)
    else:
        os.environ["NECGS_PRIOR_DIRS"] = saved[0]
    installed.SHIPPED_DIR = saved[1]


@pytest.fixture(scope="session")
def tiny_prior_dir(tmp_path_factory) -> Path:
    """A folder holding one tiny prior, ``tiny`` (K = 16, trained for seconds on the built-in cad set)."""
    from necgs.priors.training import PriorConfig, train_prior

    folder = tmp_path_factory.mktemp("priors")
    cfg = PriorConfig(
        resolution=16,
        width="tiny",
        steps=60,
        fit_iterations=0,
        batch_size=8,
        block_size=8,
        checkpoint_every=0,
        device="cpu",
    )
    train_prior(["cad"], folder / "tiny.ncgp", cfg, checkpoint_dir=tmp_path_factory.mktemp("prior-ckpt"))
    return folder
