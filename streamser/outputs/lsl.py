"""Lab Streaming Layer outlets: one affect stream per analysed stream, and one marker stream.

Recorders such as LabRecorder keep these beside EEG and other signals, on one clock. Each affect
outlet sends one float32 sample of eleven channels per estimate (:mod:`affect_channels`) at an
irregular rate, dated to the capture time of its window's last sample on LSL's clock
(:mod:`clocks`); the marker outlet sends one string per event (:mod:`markers`) on the same clock.
The stream's XML description names and units its channels and records the model, its precision,
the window, the hop and streamser's version.

A ``source_id`` is derived from the input (device name, file path or replayed session) and the
stream's name, so it stays the same when streamser restarts and a recorder picks the stream up
again. pylsl (and the liblsl its wheels bundle) is imported only when an outlet is made; a
missing or unloadable library is a one-line :class:`OutputError`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from streamser.contracts import Estimate, StreamSpec
from streamser.outputs.affect_channels import CHANNELS, channel_values
from streamser.outputs.errors import OutputError
from streamser.outputs.markers import RUN_EVENTS, STREAM_EVENTS, Marker
from streamser.outputs.run_facts import RunFacts

log = logging.getLogger("streamser")

INSTALL_HINT = "pip install 'streamser[lsl]'"
AFFECT_TYPE = "Affect"
MARKERS_TYPE = "Markers"
MARKERS_NAME = "streamser-markers"
TIMESTAMPS = (
    "capture time of the last sample of the estimate's 3 s window, on LSL's clock "
    "(local_clock() minus the estimate's latency when it is sent); a replay dates it to when "
    "the replay reaches the window's end"
)
"""What a sample's timestamp means, as each stream's description says it."""
LINGER_S = 0.5
"""How long closing leaves connected outlets up, so the last samples reach their consumers:
liblsl sends on threads of its own, has no flush, and drops what it has not sent when an outlet
is destroyed (a replay that closes right after its last push lost that sample)."""


def import_pylsl() -> ModuleType:
    """pylsl with its liblsl loaded, or a one-line error that says what to install."""
    try:
        import pylsl
    except ImportError as e:
        raise OutputError(f"--lsl needs pylsl: {INSTALL_HINT}") from e
    except (RuntimeError, OSError) as e:  # the wheel's liblsl is missing or does not load here
        raise OutputError(
            f"--lsl: pylsl cannot load liblsl ({_first_line(e)}); {INSTALL_HINT} brings it on "
            "Linux x86_64 (glibc 2.35+), macOS and Windows; elsewhere install liblsl "
            "(conda install -c conda-forge liblsl) or point PYLSL_LIB at it"
        ) from e
    return pylsl


def stream_name(stream: str) -> str:
    """The affect outlet's LSL name for ``stream``, as recorders list it."""
    return f"streamser-{stream}"


def source_id(input_name: str, stream: str) -> str:
    """The affect outlet's ``source_id``: the same input and stream give the same id."""
    return f"streamser:{input_name}:stream:{stream}"


def markers_source_id(input_name: str) -> str:
    return f"streamser:{input_name}:markers"


def markers_name(client: str | None = None) -> str:
    """The marker outlet's LSL name: one per run, or one per client of a server."""
    return MARKERS_NAME if client is None else f"{MARKERS_NAME}-{client}"


class LslOutput:
    """The run's LSL outlets; ``send`` and ``send_markers`` are called under the caller's lock."""

    name = "lsl"

    def __init__(self, facts: RunFacts) -> None:
        self._lsl = import_pylsl()
        self.facts = facts
        self._outlets: dict[str, Any] = {}
        self.streams: list[str] = []
        """Every stream given an outlet, in order (declared ones first, then new ones)."""
        self.estimates = 0
        self.markers = 0
        self.errors = 0
        self.last_error: str | None = None
        self._closed = threading.Event()
        for spec in facts.streams:
            self._affect_outlet(spec)
        self._marker_outlet = self._lsl.StreamOutlet(self._markers_info())

    # -- sending --------------------------------------------------------------------------

    def send(self, est: Estimate, markers: Sequence[Marker], age_s: float) -> None:
        """Push ``est`` (and the events it shows) dated ``age_s`` before now."""
        if self._closed.is_set():
            return
        at = self._lsl.local_clock() - age_s
        try:
            outlet = self._outlets.get(est.stream) or self._affect_outlet(
                StreamSpec(est.stream, None)
            )
            outlet.push_sample(channel_values(est), at)
            self.estimates += 1
        except Exception as e:  # counted and reported at the end; the analysis goes on
            self._failed(e)
        self._push_markers(markers, at)

    def send_markers(self, markers: Sequence[Marker], age_s: float) -> None:
        if not self._closed.is_set():
            self._push_markers(markers, self._lsl.local_clock() - age_s)

    def _push_markers(self, markers: Sequence[Marker], at: float) -> None:
        for marker in markers:
            try:
                self._marker_outlet.push_sample([marker.text], at)
                self.markers += 1
            except Exception as e:
                self._failed(e)

    def _failed(self, e: Exception) -> None:
        self.errors += 1
        if self.last_error is None:
            log.warning("lsl: cannot push a sample: %s (counted; the analysis goes on)", e)
        self.last_error = _first_line(e)

    # -- consumers and lifecycle ----------------------------------------------------------

    def wait_for_consumers(self, timeout_s: float) -> bool:
        """Wait until every outlet has a consumer, for at most ``timeout_s`` in all; says so."""
        names = ", ".join(self.outlet_names())
        log.info("lsl: waiting up to %g s for a consumer (a recorder) on %s", timeout_s, names)
        deadline = time.monotonic() + timeout_s
        for outlet in (*self._outlets.values(), self._marker_outlet):
            if not outlet.wait_for_consumers(max(0.0, deadline - time.monotonic())):
                log.warning(
                    "lsl: not every stream has a consumer after %g s; going on (a consumer that "
                    "connects later misses what was sent before)",
                    timeout_s,
                )
                return False
        return True

    def outlet_names(self) -> list[str]:
        return [*(stream_name(s) for s in self.streams), markers_name(self.facts.client)]

    def counters(self) -> dict[str, Any]:
        return {
            "source_ids": [source_id(self.facts.input_name, s) for s in self.streams],
            "estimates": self.estimates,
            "markers": self.markers,
            "errors": self.errors,
            "last_error": self.last_error,
        }

    def summary(self) -> str:
        errors = f", {self.errors} push errors ({self.last_error})" if self.errors else ""
        return (
            f"lsl: {self.estimates} estimates and {self.markers} markers pushed to "
            f"{', '.join(self.outlet_names())}{errors}"
        )

    def close(self) -> None:
        """Withdraw the outlets (recorders see the streams end); idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        outlets = (*self._outlets.values(), self._marker_outlet)
        if any(outlet.have_consumers() for outlet in outlets):
            time.sleep(LINGER_S)
        self._outlets.clear()  # pylsl destroys an outlet when its last reference goes
        self._marker_outlet = None

    # -- stream descriptions --------------------------------------------------------------

    def _affect_outlet(self, spec: StreamSpec) -> Any:
        info = self._lsl.StreamInfo(
            stream_name(spec.name),
            AFFECT_TYPE,
            len(CHANNELS),
            self._lsl.IRREGULAR_RATE,
            self._lsl.cf_float32,
            source_id(self.facts.input_name, spec.name),
        )
        info.set_channel_labels([label for label, _ in CHANNELS])
        info.set_channel_units([unit for _, unit in CHANNELS])
        info.set_channel_types(AFFECT_TYPE)
        own = self._describe(info, spec.name)
        own.append_child_value(
            "input_channel", "mix" if spec.channel is None else str(spec.channel + 1)
        )
        own.append_child_value("timestamps", TIMESTAMPS)
        own.append_child_value(
            "channels_note",
            "arousal: P(high arousal), 0..1; valence: expected valence, -1..1; *_smooth: "
            "exponentially smoothed over speech; speech: fraction of the window heard as "
            "speech; p_*: class probabilities; NaN: not computed",
        )
        outlet = self._lsl.StreamOutlet(info)
        self._outlets[spec.name] = outlet
        self.streams.append(spec.name)
        return outlet

    def _markers_info(self) -> Any:
        info = self._lsl.StreamInfo(
            markers_name(self.facts.client),
            MARKERS_TYPE,
            1,
            self._lsl.IRREGULAR_RATE,
            self._lsl.cf_string,
            markers_source_id(self.facts.input_name),
        )
        info.set_channel_labels(["event"])
        own = self._describe(info, None)
        own.append_child_value(
            "format",
            "EVENT [STREAM] [DETAIL], space-separated; stream events: "
            f"{', '.join(STREAM_EVENTS)} (skipped: DETAIL is the number of windows skipped); "
            f"run events: {', '.join(RUN_EVENTS)} (mark: DETAIL is the note)",
        )
        own.append_child_value("timestamps", "as the affect streams: " + TIMESTAMPS)
        return info

    def _describe(self, info: Any, stream: str | None) -> Any:
        """The description every outlet carries; returns its ``streamser`` element."""
        desc = info.desc()
        desc.append_child("acquisition").append_child_value("manufacturer", "streamser")
        f = self.facts
        own = desc.append_child("streamser")
        own.append_child_value("version", f.version)
        if stream is not None:
            own.append_child_value("stream", stream)
        own.append_child_value("input", f.input_name)
        if f.client is not None:
            own.append_child_value("client", f.client)
        if f.replay_of is not None:
            own.append_child_value("replay_of", f.replay_of)
        model = own.append_child("model")
        model.append_child_value("id", f.model_name)
        model.append_child_value("revision", f.model_revision or "")
        model.append_child_value("sha256_status", f.sha256_status)
        model.append_child_value("demo", "true" if f.demo else "false")
        own.append_child_value("precision", f.precision)
        own.append_child_value("window_s", f"{f.window_s:g}")
        own.append_child_value("hop_s", f"{f.hop_s:g}")
        return own


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
