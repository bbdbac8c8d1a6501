"""The web page (Gradio 6): upload, instruct, see candidates and the heatmap, click, apply, download.

Only this module imports gradio. Everything it shows comes from an ``EditSession``. Each browser
tab gets its own session in a ``gr.State``; the model and the inpainter are shared. Work is queued
one job at a time, because sampling and inpainting use the whole CPU or GPU anyway.

Endpoints, named for ``gradio_client``: ``/propose`` (image, instruction, candidates, seed,
reference image or None, and optionally how to move: "cutout" or "redraw"),
``/choose`` (candidate index), ``/insert`` (candidate index; ``None`` = the chosen or most likely
one) and ``/finish``. The click on the candidates picture is a ``.select`` event; it is not an
endpoint.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import gradio as gr
import torch

from ..io import save_image_atomic, write_json_atomic
from .figures import candidates_figure, display_scale, enlarge, heatmap_figure
from .session import EditSession

__all__ = ["build_app", "launch_app", "THEME_CSS"]

#: Mistakes a person can make; anything else is a bug and shows Gradio's generic error.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError)

THEME_CSS = """
#status {min-height: 2.5em}
#banner {border-left: 6px solid #e8a200; background: #fff6dd; padding: 0.4em 0.8em; border-radius: 6px}
#banner p {color: #5a4300 !important; margin: 0}
#cands img, #heat img, #out img, #inp img {image-rendering: pixelated}
#inp img {width: 100%; height: 100%; object-fit: contain}
#cands img {cursor: crosshair}
footer {display: none !important}
.caption p {margin: 0 0 -6px 2px}
"""

INTRO = """\
# locinsert: put objects where they fit
**1** upload a picture or pick an example · **2** say what to add and where ("add a cup on the left, then a \
plant near the right") · **3** *Propose*: the model samples places (numbered, best first) and shows where it \
thinks the object can go · **4** click a box, or keep the most likely · **5** *Add at the chosen box*, then \
download the PNG and its JSON. Pixels outside the chosen box never change. \
**Remove and move** work the same way ("remove the cup on the left", "move the chair to the right"): for a \
removal the boxes are the parts found for the name and the heatmap is the segmenter's mask; for a move, the \
boxes are new places, and *Move to the chosen box* fills the old place and puts the object there (its own \
pixels, or drawn again: *Move by*)."""


_DOWNLOADS: list[str] = []   # the process's download folder, made on first use, removed at exit


def _downloads_root() -> str:
    if not _DOWNLOADS:
        _DOWNLOADS.append(tempfile.mkdtemp(prefix="locinsert-app-"))
        atexit.register(shutil.rmtree, _DOWNLOADS[0], True)
    return _DOWNLOADS[0]


@dataclass
class PageState:
    """One browser tab: its edit session, the chosen candidate and a folder for its downloads."""

    session: EditSession
    folder: str = field(default_factory=lambda: tempfile.mkdtemp(dir=_downloads_root()))
    info: dict = field(default_factory=dict)   # added to the downloaded JSON (model, inpainter)
    selected: int = 0
    stem: str = "edit"

    @property
    def scale(self) -> int:
        img = self.session.image
        return display_scale(*img.size) if img is not None else 1


def _delete(state: PageState | None) -> None:
    if state is not None:
        shutil.rmtree(state.folder, ignore_errors=True)


def _refuse(message) -> gr.Error:
    """A readable message in the page (a toast), never a traceback."""
    return gr.Error(str(message), title="Cannot do that", print_exception=False)


#: The action button's label for the verb of the step now proposed.
ACTION_LABELS = {"add": "Add at the chosen box", "remove": "Remove the chosen part", "move": "Move to the chosen box"}
ACTION_IDLE = "Apply the chosen candidate"


def _action_button(st: PageState | None) -> gr.Button:
    """The action button, labelled for what it does to the step now proposed (add, remove or move)."""
    p = st.session.proposal if st is not None else None
    if p is None:
        return gr.Button(value=ACTION_IDLE, interactive=False)
    return gr.Button(value=ACTION_LABELS.get(p.step.verb, ACTION_IDLE), interactive=True)


HEAT_CAPTION = "**Heatmap**: where the model would put it"


def _last_heatmap(st: PageState) -> tuple:
    """After the last step: (that step's heatmap, kept, over the edited picture; its caption)."""
    s = st.session
    last = s.applied[-1].proposal if s.applied else None
    if last is None or last.heatmap is None or s.image is None or \
            tuple(last.heatmap.shape) != (s.image.height, s.image.width):
        return None, HEAT_CAPTION
    pic = heatmap_figure(s.image, last.heatmap, region=last.region, scale=st.scale)
    what = "the segmenter's mask" if last.step.verb == "remove" else "where the model would put it"
    return pic, f"**Heatmap of the last step** ({last.step.describe()}): {what}, computed before that edit"


def _views(st: PageState):
    """(candidates picture, heatmap picture, choice radio, status, heatmap caption) for the session's
    current state."""
    s = st.session
    done_boxes = torch.stack([a.box for a in s.applied]) if s.applied else None
    if s.proposal is None:
        pic = candidates_figure(s.image, torch.zeros(0, 4), None, scale=st.scale, done_boxes=done_boxes) \
            if s.image is not None else None
        if s.done:
            msg = (f"**Done**: {len(s.applied)} step(s) applied. Download the PNG and its JSON below, or press "
                   "*Propose places* to start again.")
        elif s.blocked:
            msg = (f"**Step {s.step_index + 1} of {len(s.steps)} cannot follow**: {s.blocked}. The edit so far "
                   "is below; change the instruction and press *Propose places* to try again.")
        else:
            msg = ""
        heat, caption = _last_heatmap(st)
        return pic, heat, gr.Radio(choices=[], value=None), msg, caption
    p = s.proposal
    st.selected = min(st.selected, len(p) - 1)
    pic = candidates_figure(s.image, p.candidates.boxes, st.selected, region=p.region, scale=st.scale,
                            done_boxes=done_boxes)
    heat = heatmap_figure(s.image, p.heatmap, region=p.region, scale=st.scale) if p.heatmap is not None else None
    radio = gr.Radio(choices=[(p.label(i), i) for i in range(len(p))], value=st.selected)
    total = len(s.steps)
    action = ACTION_LABELS.get(p.step.verb, ACTION_IDLE)
    msg = (f"Step {s.step_index + 1} of {total}: {p.note}. Candidate **{st.selected + 1}** is chosen; click another "
           f"box, or press *{action}*.")
    return pic, heat, radio, msg, HEAT_CAPTION


def _save(st: PageState) -> tuple[str, str, str]:
    """The edit so far as <stem>_edited.png and <stem>_edit.json, written atomically, and the PNG
    enlarged for the page (the download keeps the image's own size)."""
    png, js = Path(st.folder) / f"{st.stem}_edited.png", Path(st.folder) / f"{st.stem}_edit.json"
    shown = Path(st.folder) / f"{st.stem}_edited_shown.png"
    save_image_atomic(st.session.image, png)
    save_image_atomic(enlarge(st.session.image, st.scale), shown)
    write_json_atomic(js, st.session.record(**st.info))
    return str(png), str(js), str(shown)


def build_app(make_session: Callable[[], EditSession], *, info: str = "", warning: str | None = None,
              examples: list[tuple[str, str]] | None = None, record_info: dict | None = None,
              default_candidates: int = 8) -> gr.Blocks:
    """The page. ``make_session()`` makes a fresh ``EditSession`` per tab (sharing model and inpainter).

    ``info``: a line about the model and inpainter; ``warning``: shown in a banner (e.g. an
    untrained model); ``examples``: (image path, instruction) pairs; ``record_info``: added to the
    downloaded JSON (model, inpainter).
    """
    record_info = dict(record_info or {})

    def new_state(image_path) -> PageState:
        st = PageState(make_session(), info=record_info)
        st.stem = Path(image_path).stem if isinstance(image_path, str) and image_path else "edit"
        return st

    def propose(image, instruction, num_candidates, seed, reference, move_by="cutout", st=None,
                progress=gr.Progress()):
        if image is None:
            raise _refuse("No image yet: upload one, or pick an example scene below.")
        if st is None:
            st = new_state(image)
        else:
            st.stem = Path(image).stem if isinstance(image, str) else "edit"
        progress(0.05, desc="sampling places")
        try:
            st.session.start(image, instruction, seed=int(seed or 0), num_candidates=int(num_candidates or 1),
                             reference=reference or None, move_by=move_by or None)
        except USER_ERRORS as e:
            raise _refuse(e) from None
        st.selected = 0
        pic, heat, radio, msg, caption = _views(st)
        no_file = gr.DownloadButton(value=None, interactive=False)
        return pic, heat, radio, msg, None, no_file, no_file, caption, _action_button(st), st

    def select(st, evt: gr.SelectData):
        if st is None or st.session.proposal is None:
            return gr.skip(), gr.skip(), "Press *Propose places* first.", st
        x, y = evt.index[0] / st.scale, evt.index[1] / st.scale
        index = st.session.pick(x, y)
        if index is None:
            return gr.skip(), gr.skip(), f"No candidate at ({x:.0f}, {y:.0f}); click inside a numbered box.", st
        st.selected = index
        pic, _, radio, msg, _ = _views(st)
        return pic, radio, msg, st

    def choose(choice, st):
        if st is None or st.session.proposal is None:
            raise _refuse("Press Propose places first.")
        try:
            index = int(choice)
        except (TypeError, ValueError):
            raise _refuse(f"not a candidate: {choice!r}") from None
        if not 0 <= index < len(st.session.proposal):
            raise _refuse(f"candidate {index + 1} does not exist; choose 1 to {len(st.session.proposal)}")
        st.selected = index
        pic, _, _, msg, _ = _views(st)
        return pic, msg, st

    def _after_edit(st):
        png, js, shown = _save(st)
        st.selected = 0
        pic, heat, radio, msg, caption = _views(st)
        return (shown, gr.DownloadButton(value=png, interactive=True), gr.DownloadButton(value=js, interactive=True),
                pic, heat, radio, msg, caption, _action_button(st), st)

    def insert(choice, st, progress=gr.Progress()):
        if st is None:
            raise _refuse("Nothing to insert yet: press Propose places first.")
        progress(0.05, desc="editing")   # add, remove or move
        index = st.selected if choice is None or choice == "" else int(choice)
        try:
            st.session.apply(index)
        except USER_ERRORS as e:
            raise _refuse(e) from None
        return _after_edit(st)

    def finish(st, progress=gr.Progress()):
        if st is None:
            raise _refuse("Nothing to do yet: press Propose places first.")
        progress(0.05, desc="applying the remaining steps")
        try:
            st.session.finish()
        except USER_ERRORS as e:
            raise _refuse(e) from None
        return _after_edit(st)

    # No usage statistics leave the machine; Gradio's copies of the pictures older than a day are deleted.
    with gr.Blocks(title="locinsert", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown(INTRO)
        if warning:
            gr.Markdown(f"**Warning:** {warning}", elem_id="banner")
        if info:
            gr.Markdown(info, elem_id="info")
        state = gr.State(None, delete_callback=_delete)
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=300):
                inp = gr.Image(type="filepath", sources=["upload", "clipboard"], label="Image", elem_id="inp",
                               height=300)
                instr = gr.Textbox(label="Instruction", elem_id="instr", lines=1, max_lines=3,
                                   placeholder="add a cup on the left, then a plant near the right")
                with gr.Accordion("Reference: insert this very object (optional)", open=False):
                    ref = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                   show_label=False, elem_id="ref", height=160)
                    gr.Markdown("A photo or an RGBA cut-out. It becomes the object written *it* or *this ...* "
                                "(\"add this chair on the left\"), or the only one.", elem_classes=["caption"])
                with gr.Row():
                    ncand = gr.Slider(1, 32, value=default_candidates, step=1, label="Candidates", elem_id="ncand")
                    seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed", min_width=80)
                move_by = gr.Radio([("its own pixels", "cutout"), ("drawn again by the inpainter", "redraw")],
                                   value="cutout", label="Move by", elem_id="move_by",
                                   info="how a moved object is drawn at its new place (locinsert edit --move-by)")
                propose_btn = gr.Button("Propose places", variant="primary", elem_id="propose")
                if examples:
                    gr.Examples(examples=[list(e) for e in examples], inputs=[inp, instr],
                                label="Example scenes (the synthetic world)", examples_per_page=6)
            with gr.Column(scale=7, min_width=400):
                with gr.Row():
                    with gr.Column(min_width=200):
                        gr.Markdown("**Candidates**: click a box to choose it", elem_classes=["caption"])
                        cands = gr.Image(show_label=False, interactive=False, format="png", elem_id="cands",
                                         buttons=[], height=340)
                    with gr.Column(min_width=200):
                        heat_caption = gr.Markdown(HEAT_CAPTION, elem_classes=["caption"], elem_id="heat_caption")
                        heat = gr.Image(show_label=False, interactive=False, format="png", elem_id="heat",
                                        buttons=["fullscreen"], height=340)
                choice = gr.Radio(label="Chosen candidate (best first)", choices=[], elem_id="choice")
                status = gr.Markdown(elem_id="status")
                with gr.Row():
                    insert_btn = gr.Button(ACTION_IDLE, variant="primary", elem_id="insert", interactive=False)
                    finish_btn = gr.Button("Finish with the most likely boxes", elem_id="finish")
                gr.Markdown("**Edit**: the picture so far (downloads keep its own size)", elem_classes=["caption"])
                with gr.Row(equal_height=False):
                    out = gr.Image(show_label=False, interactive=False, format="png", elem_id="out", buttons=[],
                                   height=340)
                    with gr.Column(min_width=160, scale=0):
                        dl_png = gr.DownloadButton("Download PNG", elem_id="dl_png", interactive=False)
                        dl_json = gr.DownloadButton("Download JSON", elem_id="dl_json", interactive=False)

        edit_outputs = [out, dl_png, dl_json, cands, heat, choice, status, heat_caption, insert_btn, state]
        proposed = [cands, heat, choice, status, out, dl_png, dl_json, heat_caption, insert_btn, state]
        propose_btn.click(propose, [inp, instr, ncand, seed, ref, move_by, state], proposed, api_name="propose")
        instr.submit(propose, [inp, instr, ncand, seed, ref, move_by, state], proposed, api_visibility="private")
        cands.select(select, [state], [cands, choice, status, state], api_visibility="private")
        choice.input(choose, [choice, state], [cands, status, state], api_name="choose")
        insert_btn.click(insert, [choice, state], edit_outputs, api_name="insert")
        finish_btn.click(finish, [state], edit_outputs, api_name="finish")
    demo.queue(default_concurrency_limit=1)
    return demo


def launch_app(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, **kwargs):
    """Serve ``demo`` with the page's theme; extra keywords go to ``Blocks.launch``."""
    kwargs.setdefault("footer_links", [])
    return demo.launch(server_name=host, server_port=port, theme=gr.themes.Soft(primary_hue="orange"),
                       css=THEME_CSS, show_error=False, **kwargs)
