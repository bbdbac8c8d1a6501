"""Shared by the web-app tests: a tiny saved model, a small scene, a page served on a free port."""

from __future__ import annotations

import contextlib
import os
import socket

import numpy as np
import torch
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_checkpoint(folder) -> str:
    """A tiny random LocationModel saved like a trained one, so the app loads it through from_pretrained."""
    from locinsert import LocationModel, LocationModelConfig

    torch.manual_seed(0)
    LocationModel(LocationModelConfig.preset("tiny")).save_pretrained(folder)
    return str(folder)


def scene_png(path, size: int = 64, seed: int = 3) -> str:
    from locinsert.data.synthetic import make_scene

    Image.fromarray(make_scene(seed, size=size).render()).save(path)
    return str(path)


def page_args(*extra: str):
    from locinsert.cli.main import build_parser

    return build_parser().parse_args(["app", *extra])


@contextlib.contextmanager
def served(page, **kwargs):
    """Serve ``page`` on 127.0.0.1 at a free port; always close the server."""
    from locinsert.app.page import launch_app

    try:
        _, url, _ = launch_app(page, "127.0.0.1", free_port(), prevent_thread_lock=True, quiet=True, **kwargs)
        yield url
    finally:
        page.close()

