"""The web app (``locinsert app``): upload, instruct, see where an object can go, click, edit, download.

- ``EditSession`` (``session.py``): the edit, step by step, with no web code.
- ``Operation`` / ``AddObject`` / ``RemoveObject`` / ``MoveObject`` (``operations.py``): one verb
  each. A new verb is a new operation.
- ``create_app(model, inpainter)`` (``factory.py``): the Gradio page around them;
  ``launch_app(page)`` serves it.

Gradio is an optional extra (``pip install "locinsert[app]"``): only ``page.py`` imports it, when
``create_app``, ``build_app`` or ``launch_app`` is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # the public names: static tools read them here, lazy_exports loads each on first use
    from .session import EditSession, AppliedStep
    from .operations import Operation, AddObject, RemoveObject, MoveObject, Step, Proposal, plan_steps
    from .factory import create_app, find_demo_model, example_scenes, session_factory
    from .page import build_app, launch_app

__getattr__, __dir__, __all__ = lazy_exports(__name__)
