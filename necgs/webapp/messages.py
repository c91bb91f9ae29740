"""What the page tells its user: the status box's HTML, and messages with no server path in them.

Every failure a user can cause becomes a visible message naming the file or id and the reason
(never a server path, never Gradio's red "Error" badge).
"""

from __future__ import annotations

import html
import re

import pandas as pd

_ABS_PATH = re.compile(r"(?:/[^\s/:;,'\"()]+)+/([^\s/:;,'\"()]+)")


def scrub_paths(text: str) -> str:
    """A message with every absolute server path shortened to its file name."""
    return _ABS_PATH.sub(r"\1", str(text))


def info_html(text: str) -> str:
    """A neutral status line."""
    return f"<div style='padding:6px 0'>{html.escape(text)}</div>"


def problem_html(title: str, details: list[str] | None = None) -> str:
    """A visible problem message: what failed, then one line per file or reason."""
    items = "".join(f"<li>{html.escape(d)}</li>" for d in details or [])
    return (
        "<div role='alert' class='necgs-problem' style='border:2px solid #c62828;background:#fdecea;"
        f"color:#7f1d1d;padding:8px 12px;border-radius:6px'><b>{html.escape(title)}</b>"
        + (f"<ul style='margin:4px 0 0 16px'>{items}</ul>" if items else "")
        + "</div>"
    )


def progress_html(fraction: float, text: str) -> str:
    """The progress display's own bar (used for the background first-launch run)."""
    pct = max(0.0, min(1.0, fraction)) * 100
    return (
        f"<div id='bg-progress' style='font-size:13px'>{html.escape(text)} ({pct:.0f}%)"
        f"<div style='height:8px;background:#e5e7eb;border-radius:4px'><div style='height:8px;width:{pct:.1f}%;"
        "background:#2563eb;border-radius:4px'></div></div></div>"
    )


def failures_html(summary: pd.DataFrame) -> str:
    """A problem box naming each setting that failed in a run (the others are shown), or nothing."""
    failed = summary[summary.status == "error"] if "status" in summary else summary.iloc[:0]
    if not len(failed):
        return ""
    lines = [f"{r.codec} {r.label}: {scrub_paths(r.error)}" for r in failed.itertuples()]
    return problem_html("Some settings failed; the others are shown:", lines)
