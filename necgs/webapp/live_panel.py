"""The live panel and the progress display, refreshed once a second for each visitor.

The progress display has one writer, this module's tick, and shows the visitor's own state only:
their job running (its bar, what it does, about how long is left), or waiting (their place, the
running job's progress and an estimate); with no job of theirs, the first-launch run while it
computes (or why it failed); else nothing. (Before, the job's Gradio progress and the first-launch
heartbeat wrote to it in turn: it blinked, alternated between the two, and kept the first-launch
run's last words after it had ended.)

The live panel shows the visitor's job as it computes (:mod:`necgs.webapp.live`): the loss
curve of each training, the newest decoded shape (error-coloured, with its CD so far) and a
table of every shape decoded so far. It appears with the job's first live update and keeps the
last job's curve and shapes until the next job starts.
"""

from __future__ import annotations

import html
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from necgs.evaluation.figures import VARIANT_COLORS
from necgs.webapp.first_launch import INITIAL_RUN
from necgs.webapp.jobs import JOBS, Ticket
from necgs.webapp.live import LIVE_SAMPLES, LiveState, feed_of
from necgs.webapp.messages import problem_html, progress_html
from necgs.webapp.sessions import request_session

#: How often the page asks for its progress and live updates (seconds).
TICK_S = 1.0
#: The loss figure is redrawn at most this often (seconds): a redraw costs the browser more than a tick.
CURVE_EVERY_S = 2.0
#: A new Model3D may drop its first file while its 3D engine starts (seen in headless Chromium on a
#: loaded machine: it loads the engine, tries WebGPU, falls back to WebGL), so the viewer's first
#: shape is sent again this many seconds later unless a newer one replaced it.
RESEND_FIRST_S = 3.0


@dataclass
class LivePanel:
    """The live panel's components and what the page shows of it.

    Attributes:
        group: The panel (hidden until the visitor's job has something to show).
        caption: What the job does and what the viewer shows.
        curve: The loss curves.
        viewer: The newest decoded shape.
        table: Every shape decoded so far, with its CD.
        timer: The once-a-second tick.
        seen: What the page shows now (so a tick sends only what changed).
    """

    group: gr.Group
    caption: gr.HTML
    curve: gr.Plot
    viewer: gr.Model3D
    table: gr.Dataframe
    timer: gr.Timer
    seen: gr.State


def live_panel() -> LivePanel:
    """The live panel (hidden), built where it is called."""
    with gr.Group(visible=False, elem_id="live") as group:
        caption = gr.HTML("", elem_id="live_caption")
        with gr.Row(equal_height=True):
            curve = gr.Plot(label="loss while it trains", elem_id="live_curve", scale=3)
            viewer = gr.Model3D(
                label="decoded so far", elem_id="live_shape", height=260, clear_color=[1, 1, 1, 1], scale=2
            )
        table = gr.Dataframe(
            label="shapes decoded so far (CD: a quick estimate; the run's table replaces it)",
            elem_id="live_table",
            interactive=False,
            max_height=200,
        )
    return LivePanel(group, caption, curve, viewer, table, gr.Timer(TICK_S), gr.State(None))


def wire_live(panel: LivePanel, progress: gr.HTML) -> None:
    """Every tick: the progress display and the live panel."""
    panel.timer.tick(
        on_live_tick,
        [panel.seen],
        [progress, panel.group, panel.caption, panel.curve, panel.viewer, panel.table, panel.seen],
        show_progress="hidden",
        queue=False,
    )


# ---------------------------------------------------------------------------- the progress display
def progress_box(session: str) -> str:
    """The progress display's HTML for ``session`` (see the module's docstring)."""
    ticket = JOBS.ticket_of(session)
    if ticket is not None:
        place, total, running = JOBS.place(ticket)
        if ticket.started is not None:
            return progress_html(ticket.fraction, f"your job: {ticket.text}{_left(ticket)}")
        if place:
            ahead = f"; the running job: {running.text}{_left(running)}" if running is not None else ""
            return progress_html(
                running.fraction if running is not None else 0.0,
                f"waiting: your job is number {place} of {total} ({place - 1} ahead){ahead}",
            )
    bg = INITIAL_RUN
    if bg.error:
        return problem_html("The first-launch run failed:", [bg.error])
    if bg.running:
        return progress_html(bg.fraction, f"first launch: {bg.text}")
    return ""


def _left(ticket: Ticket) -> str:
    eta = ticket.eta_s()
    if eta is None:
        return ""
    return f", about {eta:.0f} s left" if eta < 90 else f", about {eta / 60:.0f} min left"


# ---------------------------------------------------------------------------- the tick
#: What a page has been sent before its first tick.
_NOTHING_SEEN = {
    "box": None,
    "key": None,
    "shown": False,
    "glb": None,
    "glb_job": None,
    "resend_at": None,
    "curves": None,
    "drawn": 0.0,
}


def on_live_tick(seen: dict | None, request: gr.Request) -> list:
    """[progress display, panel visibility, caption, loss figure, viewer, table, seen]: each only
    where it changed since ``seen``.

    The panel is made visible first and filled from the next tick; the viewer's first shape is
    sent a second time :data:`RESEND_FIRST_S` later (:func:`_again`) unless a newer one came.
    """
    session = request_session(request)
    seen = dict(seen or _NOTHING_SEEN)
    out = [gr.update() for _ in range(6)]
    box = progress_box(session)
    if box != seen["box"]:
        out[0], seen["box"] = box, box
    feed = feed_of(session)
    state = feed.state() if feed is not None else None
    if state is None or not (state.curves or state.shapes or state.text):
        return [*out, seen]
    if not seen["shown"]:
        out[1], seen["shown"] = gr.update(visible=True), True
        return [*out, seen]  # the rest once the panel is drawn
    now = time.monotonic()
    key = (feed.started, state.version)
    points = (feed.started, sum(len(c.x) for c in state.curves))
    if key != seen["key"]:
        out[2], out[5], seen["key"] = caption_html(state), shapes_table(state), key
    # a new job's empty figure replaces the last job's curve; before any curve, nothing is sent
    if points != seen["curves"] and now - seen["drawn"] >= CURVE_EVERY_S and (points[1] > 0 or seen["curves"]):
        out[3], seen["curves"], seen["drawn"] = loss_figure(state), points, now
    latest = state.latest
    if latest is not None and latest.glb and latest.glb != seen["glb"]:
        out[4] = gr.update(value=latest.glb, label=_viewer_title(latest))
        seen["resend_at"] = now + RESEND_FIRST_S if seen["glb"] is None else None
        seen["glb"], seen["glb_job"] = latest.glb, feed.started
    elif seen["glb"] is not None and seen["glb_job"] != feed.started:  # a new job, no shape yet: the last job's goes
        out[4], seen["glb"], seen["resend_at"] = gr.update(value=None, label="decoded so far"), None, None
    elif seen["resend_at"] is not None and now >= seen["resend_at"]:
        out[4], seen["resend_at"] = gr.update(value=_again(seen["glb"])), None
    return [*out, seen]


def _again(glb: str) -> str | None:
    """A copy of a viewer file under a new name (a viewer loads a file again only by another name)."""
    source = Path(glb)
    copy = source.with_name(f"again_{source.name}")
    try:
        shutil.copyfile(source, copy)
    except OSError:  # removed meanwhile (a newer shape, or the tab closed): nothing to send again
        return None
    return str(copy)


def caption_html(state: LiveState) -> str:
    """What the job does now, the shape in the viewer, and when the first shape came."""
    lines = [f"<b>Live:</b> {html.escape(state.text)}" if state.text else "<b>Live</b>"]
    if state.latest is not None:
        lines.append(f"in the viewer: {html.escape(_viewer_title(state.latest))}")
    if state.first_shape_s is not None:
        lines.append(
            f"first decoded shape after {state.first_shape_s:.1f} s; CDs here are quick estimates "
            f"({LIVE_SAMPLES // 1000}k samples per surface), replaced by the run's table when it is done"
        )
    return "<div style='font-size:13px'>" + "<br>".join(lines) + "</div>"


def _viewer_title(shape) -> str:
    quality = f"CD {1e3 * shape.cd:.2f}e-3" if np.isfinite(shape.cd) else "no surface yet"
    return f"{shape.name}, {shape.what}: {quality}"


def loss_figure(state: LiveState) -> go.Figure:
    """Each variant's loss against its epochs (or feature updates), log scale, in its variant colour."""
    fig = go.Figure()
    for curve in state.curves:
        k = state.order.index(curve.label) if curve.label in state.order else len(state.order)
        fig.add_trace(
            go.Scatter(
                x=curve.x,
                y=curve.y,
                mode="lines",
                name=f"necgs {curve.label} ({curve.unit}s)",
                line={"color": VARIANT_COLORS[k % len(VARIANT_COLORS)]},
            )
        )
    units = {c.unit for c in state.curves}
    fig.update_layout(
        height=260,
        margin={"l": 50, "r": 10, "t": 30, "b": 40},
        xaxis_title=" / ".join(sorted(units)) or "epoch",
        yaxis_title="loss",
        yaxis_type="log",
        legend={"orientation": "h", "y": 1.15},
    )
    return fig


def shapes_table(state: LiveState) -> pd.DataFrame:
    """One row per shape decoded so far: its newest CD and what decoded it."""
    rows = [
        {
            "shape": s.name,
            "CD x1e-3 (quick)": round(1e3 * s.cd, 3) if np.isfinite(s.cd) else None,
            "decoded from": s.what,
            "after s": round(s.at_s, 1),
        }
        for s in state.shapes
    ]
    return pd.DataFrame(rows, columns=["shape", "CD x1e-3 (quick)", "decoded from", "after s"])
