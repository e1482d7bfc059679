"""The rows that say whether the output can be trusted: level meter, status line and banners.

They are drawn from a :class:`StatusSnapshot` polled on the status timer. The functions that
decide what to say (:func:`status_fields`, :func:`status_banners`) are pure, so every wording
and highlight is tested without a running app.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby
from pathlib import Path
from typing import Any, ClassVar, Literal

from rich.text import Text
from textual.geometry import Size

from streamser.contracts import StatusSnapshot
from streamser.labels import DEMO_WARNING
from streamser.tui.render import CachedRender, TextBuilder

LEVEL_FLOOR_DBFS = -60.0
"""Bottom of the level meter; quieter input shows an empty bar."""
LEVEL_WARN_DBFS = -12.0
LEVEL_HOT_DBFS = -3.0
SILENCE_DBFS = -100.0
"""At or below this level the meter reads ``silent`` instead of a number. It is under a 16-bit
file's smallest step (-90.3 dBFS), and the engine reports an all-zero block as -200 dBFS, a
figure that means "no signal" rather than a level (and would not fit the number field)."""

MAX_LABEL_CHARS = 12
"""A stream name longer than this is cut in the level meter's label: the bar keeps its room."""


class LevelMeter(CachedRender):
    """Input level in dBFS on one row, coloured by headroom, with a clipping flag; labelled
    ``input``, or with the selected stream's name when there are several."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "meter--label",
        "meter--ok",
        "meter--warn",
        "meter--hot",
        "meter--clip",
        "meter--track",
    }
    DEFAULT_CSS = """
    LevelMeter { height: 1; }
    LevelMeter > .meter--label { color: $foreground 60%; }
    LevelMeter > .meter--ok { color: $text-success; }
    LevelMeter > .meter--warn { color: $text-warning; }
    LevelMeter > .meter--hot { color: $text-error; }
    LevelMeter > .meter--clip { color: $foreground; background: $error; text-style: bold; }
    LevelMeter > .meter--track { color: $foreground 60%; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.reading: tuple[float | None, bool, bool] = (None, False, False)
        self.label = "input"

    def show(
        self, level_dbfs: float | None, clipping: bool, muted: bool, label: str = "input"
    ) -> None:
        reading = (None if level_dbfs is None else round(level_dbfs, 1), clipping, muted)
        if reading != self.reading or label != self.label:
            self.label = label
            self.reading = reading
            self.refresh()

    def cache_key(self) -> tuple[Any, ...]:
        return (*self.reading, self.label)

    def build(self, width: int, height: int) -> TextBuilder:
        level, clipping, muted = self.reading
        label = self.label[:MAX_LABEL_CHARS] + " "
        value = self._value_text(level, muted)
        flag = " CLIP " if clipping else ""
        bar_width = max(width - len(label) - len(value) - len(flag) - 1, 4)
        filled = 0
        if level is not None and not muted:
            fraction = (level - LEVEL_FLOOR_DBFS) / -LEVEL_FLOOR_DBFS
            filled = round(min(max(fraction, 0.0), 1.0) * bar_width)
        out = TextBuilder()
        out.add(label, self.style_of("meter--label"))
        for zone, cells in groupby(self._zones(bar_width)[:filled]):
            out.add("█" * len(list(cells)), self.style_of(f"meter--{zone}"))
        out.add("·" * (bar_width - filled), self.style_of("meter--track"))
        out.add(" " + value)
        if flag:
            out.add(flag, self.style_of("meter--clip"))
        return out

    @staticmethod
    def _value_text(level: float | None, muted: bool) -> str:
        if muted:
            return "  muted   "
        if level is None:
            return "   — dBFS "
        if level <= SILENCE_DBFS:
            return "   silent  "  # as wide as a reading, so the bar keeps its length
        return f"{level:5.1f} dBFS "

    @staticmethod
    def _zones(bar_width: int) -> list[str]:
        """Headroom zone of each bar cell, judged at the cell's upper edge."""
        zones = []
        for i in range(bar_width):
            db = LEVEL_FLOOR_DBFS * (1 - (i + 1) / bar_width)
            zones.append("ok" if db < LEVEL_WARN_DBFS else "warn" if db < LEVEL_HOT_DBFS else "hot")
        return zones


# ---------------------------------------------------------------------------------------------
# Status line and banners

Kind = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class StatusField:
    """One item of the status line; ``kind`` picks a highlight when it needs attention."""

    text: str
    kind: Kind | None = None


def status_fields(s: StatusSnapshot, *, received: int) -> list[StatusField]:
    """The status lines' items in reading order: source, model, timing, losses, session.

    Short labels (``win`` windows, ``smp`` samples) keep it to three lines at 80 columns.
    """
    rate = f" @ {s.sample_rate_hz} Hz" if s.sample_rate_hz > 0 else ""
    rtf = "—" if s.rtf is None else f"{s.rtf:.2f}"
    lag = "—" if s.latency_s is None else f"{s.latency_s:.2f} s"
    return [
        StatusField(f"{source_label(s.device)}: {s.device}{rate}"),
        StatusField(
            f"model: {s.model_name}" + (" (demo)" if s.demo_model else ""),
            "warning" if s.demo_model else None,
        ),
        StatusField(f"{s.compute_device} {s.dtype}"),
        StatusField(f"hop {s.hop_s:.2f} s"),
        StatusField(f"RTF {rtf}", "warning" if s.rtf is not None and s.rtf > 1 else None),
        StatusField(f"lag {lag}"),
        StatusField(f"skipped {s.skipped_windows} win", "warning" if s.skipped_windows else None),
        StatusField(f"dropped {s.dropped_samples} smp", "error" if s.dropped_samples else None),
        *(
            [StatusField(f"rec lost {s.recorder_dropped_frames} fr", "error")]
            if s.recorder_dropped_frames
            else []
        ),
        StatusField(f"estimates {received}"),
        StatusField(f"session: {s.session_path or '—'}"),
    ]


AUDIO_FILE_SUFFIXES = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64"}
)
"""Endings that make a device string a file path even when the file is not (or no longer) here."""


@lru_cache(maxsize=16)
def source_label(device: str) -> str:
    """``file`` when ``device`` names an audio file, ``input`` for a device (or anything else).

    The snapshot carries one string for both, and a file path labelled like a microphone misled
    readers. Cached because the status is polled ten times a second and the answer for a given
    string does not change while it is shown.
    """
    path = Path(device)
    if path.suffix.lower() in AUDIO_FILE_SUFFIXES:
        return "file"
    try:
        return "file" if path.is_file() else "input"
    except OSError:  # a device name that is no valid path, e.g. too long
        return "input"


def state_fields(s: StatusSnapshot) -> list[StatusField]:
    """Capture, recording and logging state: shown beside the level meter, where eyes go."""
    return [
        StatusField("capture muted" if s.muted else "capture on", "warning" if s.muted else None),
        StatusField("● REC" if s.recording else "rec off", "error" if s.recording else None),
        StatusField("log on" if s.logging else "log off", None if s.logging else "warning"),
    ]


def pack_fields(
    fields: Iterable[StatusField], width: int, sep: str = " │ "
) -> list[list[StatusField]]:
    """Greedily pack fields into lines of at most ``width`` cells (a long field may exceed it)."""
    lines: list[list[StatusField]] = []
    used = 0
    for f in fields:
        if lines and used + len(sep) + len(f.text) <= width:
            lines[-1].append(f)
            used += len(sep) + len(f.text)
        else:
            lines.append([f])
            used = len(f.text)
    return lines


class StatusPanel(CachedRender):
    """Device, model, timing, counters, recording and logging state: wrapped at field boundaries."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"status--sep", "status--warning", "status--error"}
    DEFAULT_CSS = """
    StatusPanel { height: auto; color: $text-muted; }
    StatusPanel > .status--sep { color: $foreground 35%; }
    StatusPanel > .status--warning { color: $text-warning; text-style: bold; }
    StatusPanel > .status--error { color: $text-error; text-style: bold; }
    """

    SEP = " │ "

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.fields: tuple[StatusField, ...] = ()

    def show(self, fields: Iterable[StatusField]) -> None:
        """Show ``fields``; ask for a new layout only when the panel's size would change.

        The counters change with every estimate; a layout pass re-arranges the whole screen,
        which cost more than drawing the panel, so a change that keeps the shape only repaints.
        """
        fields = tuple(fields)
        if fields == self.fields:
            return
        before = self._shape(self.fields)
        self.fields = fields
        self.refresh(layout=self._shape(fields) != before)

    def _shape(self, fields: tuple[StatusField, ...]) -> tuple[int, int]:
        """Lines at the current width, and the natural width where the CSS width is ``auto``."""
        width = self.content_size.width
        lines = max(len(pack_fields(fields, width)), 1)
        auto_width = self.styles.width is None or self.styles.width.is_auto
        return lines, self._natural_width(fields) if auto_width else 0

    def _natural_width(self, fields: tuple[StatusField, ...]) -> int:
        return sum(len(f.text) for f in fields) + len(self.SEP) * max(len(fields) - 1, 0)

    def cache_key(self) -> tuple[Any, ...]:
        return self.fields

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(len(pack_fields(self.fields, width)), 1)

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return self._natural_width(self.fields)

    def build(self, width: int, height: int) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        sep = self.style_of("status--sep")
        for n, line in enumerate(pack_fields(self.fields, width)):
            if n:
                text.append("\n")
            for i, f in enumerate(line):
                if i:
                    text.append(self.SEP, style=sep)
                text.append(f.text, style=self.style_of(f"status--{f.kind}") if f.kind else "")
        return text


@dataclass(frozen=True)
class Banner:
    """A full-width line that must not be missed: why the output cannot be trusted or is stale."""

    kind: Kind
    text: str


@dataclass(frozen=True)
class BannerState:
    """The app-side facts that, with the controller's status, decide which banners show."""

    paused: bool = False
    stopping: bool = False
    start_error: str | None = None
    is_replay: bool = False


def status_banners(s: StatusSnapshot, state: BannerState) -> tuple[Banner, ...]:
    """Banners in order of severity."""
    out: list[Banner] = []
    if state.start_error:
        out.append(Banner("error", f"could not start: {state.start_error}"))
    if s.source_error:
        out.append(Banner("error", f"input problem: {s.source_error}"))
    if s.log_error:
        stopped = s.log_error.startswith("logging stopped")
        out.append(Banner("error", s.log_error if stopped else f"logging stopped: {s.log_error}"))
    if s.demo_model:
        out.append(Banner("warning", DEMO_WARNING))
    if not s.muted:  # muted capture is silent by the user's choice
        out += [Banner("warning", text) for text in silence_warnings(s)]
    if s.finished:
        what = "replay" if state.is_replay else "input"
        out.append(Banner("info", f"{what} finished: no more estimates (q quits)"))
    if state.paused:
        out.append(Banner("info", "display paused (space resumes); estimates are still received"))
    if state.stopping:
        out.append(Banner("info", "stopping: closing the session…"))
    return tuple(out)


def silence_warnings(s: StatusSnapshot) -> list[str]:
    """The silence warning to show: with several streams, the first silent stream's, naming
    every silent stream (one microphone of an interview can be off while the others work) in
    one banner, so a row of dead microphones cannot push the plots off the screen; else the
    input's."""
    if len(s.streams) > 1:
        silent = [st for st in s.streams if st.silence_warning]
        if silent:
            return [f"{', '.join(st.name for st in silent)}: {silent[0].silence_warning}"]
    return [s.silence_warning] if s.silence_warning else []


def banner_lines(text: str, width: int) -> list[str]:
    """A banner's rows at ``width`` cells: one space of margin, then the text wrapped at word
    boundaries (a word longer than a row is broken), each row padded to the full width so its
    highlight spans the screen. Every word of the message stays readable at any width."""
    inner = max(width - 1, 1)
    rows = textwrap.wrap(text, inner, break_long_words=True, break_on_hyphens=False)
    return [f" {row}".ljust(width) for row in rows or [""]]


class BannerStack(CachedRender):
    """The active banners, each highlighted and wrapped onto as many rows as it needs; takes no
    space when there is none."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"banner--info", "banner--warning", "banner--error"}
    DEFAULT_CSS = """
    BannerStack { height: auto; }
    BannerStack > .banner--info { background: $primary 30%; color: $foreground; }
    BannerStack > .banner--warning {
        background: $warning 30%; color: $foreground; text-style: bold;
    }
    BannerStack > .banner--error { background: $error 60%; color: $foreground; text-style: bold; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.banners: tuple[Banner, ...] = ()
        self.display = False

    def show(self, banners: tuple[Banner, ...]) -> None:
        if banners != self.banners:
            self.banners = banners
            self.display = bool(banners)
            self.refresh(layout=True)

    def cache_key(self) -> tuple[Any, ...]:
        return self.banners

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return sum(len(banner_lines(b.text, width)) for b in self.banners)

    def build(self, width: int, height: int) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        rows = 0
        for b in self.banners:
            style = self.style_of(f"banner--{b.kind}")
            for row in banner_lines(b.text, width):
                if rows:
                    text.append("\n")
                rows += 1
                line = Text(row, style=style)
                line.truncate(width, overflow="ellipsis")  # wide characters count two cells
                text.append_text(line)
        return text
