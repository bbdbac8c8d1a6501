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

if TYPE_CHECKING:  # what static tools read; at run time the names load on first use
    from .session import EditSession, AppliedStep
    from .operations import Operation, AddObject, RemoveObject, MoveObject, Step, Proposal, plan_steps
    from .factory import create_app, find_demo_model, example_scenes, session_factory
    from .page import build_app, launch_app

_EXPORTS = {
    "EditSession": "locinsert.app.session",
    "AppliedStep": "locinsert.app.session",
    "Operation": "locinsert.app.operations",
    "AddObject": "locinsert.app.operations",
    "RemoveObject": "locinsert.app.operations",
    "MoveObject": "locinsert.app.operations",
    "Step": "locinsert.app.operations",
    "Proposal": "locinsert.app.operations",
    "plan_steps": "locinsert.app.operations",
    "create_app": "locinsert.app.factory",
    "find_demo_model": "locinsert.app.factory",
    "example_scenes": "locinsert.app.factory",
    "session_factory": "locinsert.app.factory",
    "build_app": "locinsert.app.page",
    "launch_app": "locinsert.app.page",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
