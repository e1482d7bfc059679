"""Open Sound Control over UDP: each estimate as one timetagged bundle, for Max, Pure Data,
TouchDesigner, SuperCollider and the like.

Addresses (``<stream>`` is ``main``, or the stream's name with ``--per-channel``)::

    /streamser/<stream>/affect   arousal valence arousal_smooth valence_smooth speech  (5 floats)
    /streamser/<stream>/probs    the six class probabilities, in model order            (6 floats)
    /streamser/<stream>/marker   EVENT [DETAIL]   speech_on, speech_off, skipped N      (strings)
    /streamser/marker            EVENT [DETAIL]   mute_on/off, recording_on/off, mark NOTE

A missing value is NaN. An estimate's bundle holds its ``affect`` and ``probs`` messages and the
markers it shows; its timetag is the capture time of the window's last sample on the wall clock
(:mod:`clocks`). Run events go in bundles of their own.

UDP never waits for the receiver: the socket is non-blocking and connected to the one target
(so the kernel picks a loopback source address for a loopback target, and reports a closed port
as an error on a later send). A send that fails is counted, never raised into the analysis.
The target is parsed and resolved once, by :func:`parse_osc_target`, before the run starts.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamser.config import ConfigError
from streamser.contracts import Estimate
from streamser.outputs.affect_channels import affect_values, prob_values
from streamser.outputs.errors import OutputError
from streamser.outputs.markers import Marker

log = logging.getLogger("streamser")

INSTALL_HINT = "pip install 'streamser[osc]'"
ADDRESS_ROOT = "/streamser"
EXAMPLE = "127.0.0.1:9000"


@dataclass(frozen=True)
class OscTarget:
    """Where the bundles go: as the user wrote it, and as resolved once for every send."""

    host: str
    port: int
    family: int
    sockaddr: tuple[Any, ...]

    @property
    def text(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_osc_target(text: str) -> OscTarget:
    """``HOST:PORT`` (an IPv6 address in brackets: ``[::1]:9000``), checked and resolved, or a
    one-line ConfigError that shows the form."""
    where = f"--osc {text}"
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{where}: give the receiver as HOST:PORT, like {EXAMPLE}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"{where}: write an IPv6 address in brackets, like [::1]:9000")
    if not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(
            f"{where}: give a host and a port from 1 to 65535 as HOST:PORT, like {EXAMPLE}"
        )
    port = int(port_text)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ConfigError(
            f"{where}: cannot resolve {host!r} ({reason}); give an IP address or a host name "
            "this machine knows"
        ) from e
    family, _, _, _, sockaddr = found[0]
    return OscTarget(host, port, int(family), tuple(sockaddr))


def import_pythonosc() -> tuple[Any, Any]:
    """python-osc's bundle and message builders, or a one-line error saying what to install."""
    try:
        from pythonosc.osc_bundle_builder import OscBundleBuilder
        from pythonosc.osc_message_builder import OscMessageBuilder
    except ImportError as e:
        raise OutputError(f"--osc needs python-osc: {INSTALL_HINT}") from e
    return OscBundleBuilder, OscMessageBuilder


def marker_address(stream: str | None) -> str:
    return f"{ADDRESS_ROOT}/{stream}/marker" if stream is not None else f"{ADDRESS_ROOT}/marker"


class OscOutput:
    """One UDP socket to the target; ``send`` and ``send_markers`` are called under the caller's
    lock. python-osc encodes (padding, type tags, NTP timetags); the socket is ours, so that it
    can be connected and non-blocking."""

    name = "osc"

    def __init__(self, target: OscTarget) -> None:
        self._bundle_builder, self._message_builder = import_pythonosc()
        self.target = target
        sock = socket.socket(target.family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(target.sockaddr)
        except OSError as e:
            sock.close()
            raise OutputError(f"--osc {target.text}: cannot send there ({e.strerror or e})") from e
        self._sock: socket.socket | None = sock
        self.sent = 0
        """Datagrams handed to the network (UDP: not a promise that they arrived)."""
        self.errors = 0
        self.last_error: str | None = None

    def send(self, est: Estimate, markers: Sequence[Marker], age_s: float) -> None:
        """One bundle: ``est``'s affect and probabilities, and the events it shows."""
        bundle = self._bundle_builder(time.time() - age_s)
        root = f"{ADDRESS_ROOT}/{est.stream}"
        bundle.add_content(self._floats(f"{root}/affect", affect_values(est)))
        bundle.add_content(self._floats(f"{root}/probs", prob_values(est)))
        for marker in markers:
            bundle.add_content(self._marker(marker))
        self._send(bundle.build().dgram)

    def send_markers(self, markers: Sequence[Marker], age_s: float) -> None:
        if not markers:
            return
        bundle = self._bundle_builder(time.time() - age_s)
        for marker in markers:
            bundle.add_content(self._marker(marker))
        self._send(bundle.build().dgram)

    def _floats(self, address: str, values: list[float]) -> Any:
        msg = self._message_builder(address)
        for v in values:
            msg.add_arg(v, "f")
        return msg.build()

    def _marker(self, marker: Marker) -> Any:
        msg = self._message_builder(marker_address(marker.stream))
        msg.add_arg(marker.event, "s")
        if marker.detail:
            msg.add_arg(" ".join(marker.detail.split()), "s")
        return msg.build()

    def _send(self, dgram: bytes) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            sock.send(dgram)
        except OSError as e:  # no receiver, no route, buffer full: counted, never raised
            self.errors += 1
            if self.last_error is None:
                log.warning("osc: cannot send to %s: %s (counted; the analysis goes on)",
                            self.target.text, e.strerror or e)  # fmt: skip
            self.last_error = e.strerror or str(e)
            return
        self.sent += 1

    def wait_for_consumers(self, timeout_s: float) -> bool:
        """UDP has no consumers to wait for."""
        return True

    def counters(self) -> dict[str, Any]:
        return {
            "target": self.target.text,
            "sent": self.sent,
            "errors": self.errors,
            "last_error": self.last_error,
        }

    def summary(self) -> str:
        errors = f", {self.errors} send errors ({self.last_error})" if self.errors else ""
        return f"osc: {self.sent} bundles sent to {self.target.text}{errors}"

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
