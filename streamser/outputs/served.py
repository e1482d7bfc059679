"""Live outputs of ``streamser serve`` (``serve --lsl``, ``serve --osc``): each client's streams
go out as a local run's would, as the server computes them.

Clients come and go, so each connection gets outputs of its own, opened when its hello is
accepted and closed when it leaves: a recorder sees a client's LSL streams appear and end with
it, and a client that reconnects gets its streams back under the same ``source_id``.

A client is known by its *label*: its stream names, joined with ``+`` (``main``, ``browser``,
``alice+bob``); a second client connected under a label in use gets ``-2``, ``-3``, ... so no
two connected clients share an LSL ``source_id``. The input part of the ids is the server's
stream URL, the client's host and its label, so the same client, reconnecting from the same
machine under the same names, gets the same ids. Its LSL affect streams are named after its
stream names (``streamser-alice``) and its marker stream after its label
(``streamser-markers-alice+bob``); its OSC addresses are ``/streamser/<stream>/...`` as in a
local run, so clients meant to be told apart there need distinct stream names.

Timestamps follow the live rule (:mod:`streamser.outputs.clocks`) with the server's latency:
the moment the window's last sample *arrived at the server*; the network's delay before that is
not known to the server and not subtracted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from streamser.contracts import Estimate
from streamser.outputs.clocks import LiveClock
from streamser.outputs.live import LiveOutputConfig, LiveOutputs
from streamser.outputs.run_facts import RunFacts


class ClientLabels:
    """The labels of the clients whose outputs are open (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken: set[str] = set()

    def take(self, wanted: str) -> str:
        """``wanted``, or the first of ``wanted-2``, ``wanted-3``, ... that no client holds."""
        with self._lock:
            label, n = wanted, 1
            while label in self._taken:
                n += 1
                label = f"{wanted}-{n}"
            self._taken.add(label)
            return label

    def give_back(self, label: str) -> None:
        with self._lock:
            self._taken.discard(label)

    def __len__(self) -> int:
        with self._lock:
            return len(self._taken)


class ClientOutputs:
    """One client's outputs, kept the way a server keeps a stream's records: each estimate is
    sent as it is written; closing closes the outputs and frees the label."""

    def __init__(self, outputs: LiveOutputs, label: str, labels: ClientLabels) -> None:
        self.outputs, self.label, self._labels = outputs, label, labels

    def write_estimate(self, estimate: Estimate) -> None:
        self.outputs.publish(estimate)

    def close(self, counters: dict[str, Any]) -> None:
        try:
            self.outputs.close()
        finally:
            self._labels.give_back(self.label)


def client_facts(description: dict[str, Any], label: str) -> RunFacts:
    """The facts of a served client, from the description the server records for it."""
    audio: dict[str, Any] = description.get("audio") or {}
    server = str(audio.get("server", "streamser serve"))
    host = str(audio.get("client_host", "unknown"))
    facts = RunFacts.from_description(description)
    return replace(facts, input_name=f"{server} client {host}/{label}", client=label)


def client_label(description: dict[str, Any]) -> str:
    """What a client is called before numbering: its stream names, joined with ``+``."""
    names = [str(s.get("name")) for s in description.get("streams") or []]
    return "+".join(names) if names else "main"


def served_outputs(
    cfg: LiveOutputConfig, labels: ClientLabels | None = None
) -> Callable[[dict[str, Any]], ClientOutputs]:
    """Given a client's description, its outputs (``cfg`` must want some)."""
    taken = labels if labels is not None else ClientLabels()

    def open_for(description: dict[str, Any]) -> ClientOutputs:
        label = taken.take(client_label(description))
        try:
            outputs = LiveOutputs.open(cfg, client_facts(description, label), LiveClock(), 0.0)
        except BaseException:
            taken.give_back(label)
            raise
        return ClientOutputs(outputs, label, taken)

    return open_for
