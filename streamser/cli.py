"""Command line: parses, and hands the arguments to one command handler; no logic of its own.

Each handler below imports its command module when it is called, so building the parser (and
``streamser --help``) imports no torch, while the imports stay plain statements that tools and
the layering test can follow.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from streamser.console import program
from streamser.constants import (
    BACKENDS,
    COMPUTE_CHOICES,
    DEFAULT_MODEL_ID,
    EXPORT_FORMATS,
    MAX_HOP_S,
    MIN_HOP_S,
    PRECISIONS,
    WINDOW_S,
)
from streamser.version import __version__

Handler = Callable[[argparse.Namespace], int]

SESSION_HELP = "session id (or unique prefix), path, or 'latest'"

# ----------------------------------------------------------------------------- handlers


def _model_info(args: argparse.Namespace) -> int:
    from streamser.commands.model_cmd import model_info

    return model_info(args)


def _model_fetch(args: argparse.Namespace) -> int:
    from streamser.commands.model_cmd import model_fetch

    return model_fetch(args)


def _listen(args: argparse.Namespace) -> int:
    from streamser.commands.listen import listen

    return listen(args)


def _demo(args: argparse.Namespace) -> int:
    from streamser.commands.demo_cmd import demo

    return demo(args)


def _tune(args: argparse.Namespace) -> int:
    from streamser.commands.tune_cmd import tune

    return tune(args)


def _bench(args: argparse.Namespace) -> int:
    from streamser.commands.bench_cmd import bench

    return bench(args)


def _devices(args: argparse.Namespace) -> int:
    from streamser.commands.info_cmd import devices

    return devices(args)


def _config(args: argparse.Namespace) -> int:
    from streamser.commands.info_cmd import show_config

    return show_config(args)


def _sessions(args: argparse.Namespace) -> int:
    from streamser.commands.session_cmd import sessions

    return sessions(args)


def _replay(args: argparse.Namespace) -> int:
    from streamser.commands.session_cmd import replay

    return replay(args)


def _mark(args: argparse.Namespace) -> int:
    from streamser.commands.session_cmd import mark

    return mark(args)


def _report(args: argparse.Namespace) -> int:
    from streamser.commands.session_cmd import report

    return report(args)


def _export(args: argparse.Namespace) -> int:
    from streamser.commands.export_cmd import export

    return export(args)


def _serve(args: argparse.Namespace) -> int:
    from streamser.commands.serve_cmd import serve

    return serve(args)


def _analyze(args: argparse.Namespace) -> int:
    from streamser.commands.analyze_cmd import analyze

    return analyze(args)


# ----------------------------------------------------------------------------- parser


class Parser(argparse.ArgumentParser):
    """Usage mistakes are one line, like every other error, and point at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _switch(p: Any, name: str, dest: str, value: Any, help: str) -> None:
    """A flag that sets ``dest`` to ``value``; left out, ``dest`` is None and overrides nothing
    (the config file's setting, or the default, stands)."""
    p.add_argument(name, dest=dest, action="store_const", const=value, help=help)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model", help=f"hub id, local directory, or 'demo' (default: {DEFAULT_MODEL_ID})"
    )
    g.add_argument("--revision", help="hub revision (default: the model card's revision)")
    g.add_argument(
        "--compute",
        choices=COMPUTE_CHOICES,
        help="where to run the model (default: auto = cuda, then mps, then cpu)",
    )
    _switch(g, "--no-verify", "verify", False, "skip the one-time sha256 check of the weights")


def _add_speed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="fp32, half (fp16 on GPUs, bf16 on CPUs, fp32 residual stream), int8 (CPU), or "
        "auto: the fastest accurate path for this machine ('streamser tune' measures it); "
        "default: half on a GPU, fp32 on a CPU",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        help="torch (default) or onnxruntime: CPU fp32, ~1.2x faster on AVX2 CPUs; needs "
        "pip install 'streamser[onnx]'; the first run exports the model once (~20 s, ~6 GB)",
    )


def _add_log_dir(p: Any, help: str = "sessions directory (default: user data dir)") -> None:
    p.add_argument("--log-dir", metavar="DIR", help=help)


def _add_headless(p: Any, help: str = "JSON lines on stdout, no dashboard") -> None:
    _switch(p, "--headless", "headless", True, help)


def _add_window_args(p: argparse.ArgumentParser) -> None:
    w = p.add_argument_group("windows")
    w.add_argument(
        "--hop",
        type=float,
        help=f"seconds between window ends, {MIN_HOP_S:g} to {MAX_HOP_S:g} (default 1.0)",
    )
    _switch(
        w, "--full-windows-only", "first_s", WINDOW_S,
        "first estimate after a full 3 s window instead of after 1 s (padded)",
    )  # fmt: skip
    w.add_argument(
        "--vad-threshold",
        type=float,
        help="speech fraction (0 to 1) below which a window is non-speech (default 0.5)",
    )
    w.add_argument(
        "--smooth-s", type=float, help="smoothing time constant, 0 s or more (default 4)"
    )
    _switch(w, "--no-vad", "vad", False, "no speech gate")
    _switch(
        w, "--skip-non-speech", "skip_non_speech", True,
        "do not run the model on non-speech windows (saves compute)",
    )  # fmt: skip


def _add_stream_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("streams (one voice per input channel)")
    _switch(
        g, "--per-channel", "per_channel", True,
        "analyse each input channel as its own stream (one microphone per person)",
    )  # fmt: skip
    g.add_argument(
        "--streams", metavar="1,3", help="with --per-channel: only these channels, counted from 1"
    )
    g.add_argument(
        "--stream-names",
        metavar="alice,bob",
        help="with --per-channel: the streams' names, in channel order (default ch1, ch2, ...)",
    )


def _add_live_output_args(p: argparse.ArgumentParser, wait: bool = True) -> None:
    """``--lsl``, ``--lsl-wait`` and ``--osc``: estimates and events to lab and creative tools
    (a server has no ``--lsl-wait``: it never holds a client's estimates back)."""
    g = p.add_argument_group("live outputs (README: Live outputs)")
    _switch(
        g, "--lsl", "lsl", True,
        "publish estimates and events as Lab Streaming Layer streams, one per analysed stream, "
        "for LabRecorder (pip install 'streamser[lsl]')",
    )  # fmt: skip
    if wait:
        g.add_argument(
            "--lsl-wait",
            type=float,
            metavar="S",
            help="wait up to S seconds for a recorder to connect before the first estimate "
            "(default: 10 for a file or a replay, 0 for a microphone)",
        )
    g.add_argument(
        "--osc",
        metavar="HOST:PORT",
        help="send estimates and events as timetagged OSC bundles over UDP, e.g. "
        "127.0.0.1:9000 (pip install 'streamser[osc]')",
    )


def _add_listen_args(p: argparse.ArgumentParser) -> None:
    _add_model_args(p)
    _add_speed_args(p)
    a = p.add_argument_group("audio")
    a.add_argument("-d", "--device", help="input device: index or part of its name")
    a.add_argument("--samplerate", type=int, help="open the device at this rate (Hz)")
    a.add_argument("--channels", type=int, help="open the device with this many channels")
    a.add_argument("-i", "--input", metavar="FILE", help="replay a WAV/FLAC/OGG file instead")
    _switch(a, "--fast", "fast", True, "with --input: as fast as possible, every window")
    a.add_argument(
        "--reconnect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="retry a lost input device every few seconds (default: on)",
    )
    _add_window_args(p)
    _add_stream_args(p)
    o = p.add_argument_group("output")
    _add_headless(o)
    _add_log_dir(o, "where sessions are written")
    _switch(o, "--no-log", "log", False, "do not write a session")
    _switch(o, "--record", "record", True, "record the captured audio too")
    _add_live_output_args(p)


def _add_session_commands(sub: Any) -> None:
    sessions = sub.add_parser("sessions", help="list recorded sessions, or delete some")
    sessions.add_argument("action", nargs="?", choices=("list", "delete"), default="list")
    sessions.add_argument("ids", nargs="*", metavar="ID", help="session ids to delete")
    _add_log_dir(sessions)
    sessions.set_defaults(handler=_sessions)

    replay = sub.add_parser("replay", help="replay a session's estimates (dashboard or --headless)")
    replay.add_argument("session", help=SESSION_HELP)
    _add_headless(replay, "JSON lines on stdout")
    replay.add_argument(
        "--speed",
        type=float,
        help="pace multiplier; 0 = as fast as possible (default: 1 in the dashboard, "
        "0 with --headless)",
    )
    _add_log_dir(replay)
    _add_live_output_args(replay)
    replay.set_defaults(handler=_replay)

    mark = sub.add_parser("mark", help="mark an event in a running (or finished) session")
    mark.add_argument("session", help=SESSION_HELP)
    mark.add_argument("note", help="what happened")
    mark.add_argument("--at", type=float, help="stream time in seconds (default: now)")
    _add_log_dir(mark)
    mark.set_defaults(handler=_mark)

    report = sub.add_parser("report", help="write a shareable figure of a session")
    report.add_argument("session", help=SESSION_HELP)
    report.add_argument("-o", "--output", required=True, help="report.png or report.html")
    _add_log_dir(report)
    report.set_defaults(handler=_report)

    export = sub.add_parser(
        "export", help="write a session's tiers for ELAN (.eaf) or Praat (.TextGrid), or a CSV"
    )
    export.add_argument("session", help=SESSION_HELP)
    export.add_argument("-o", "--output", required=True, help="talk.eaf, talk.TextGrid or .csv")
    export.add_argument(
        "--format", choices=EXPORT_FORMATS, help="default: from the -o name's ending"
    )
    _switch(
        export, "--no-audio", "with_audio", False,
        "do not write the session's recording beside FILE as FILE.wav (ELAN and Praat)",
    )  # fmt: skip
    export.add_argument("--force", action="store_true", help="replace files that exist")
    _add_log_dir(export)
    export.set_defaults(handler=_export)


def build_parser() -> argparse.ArgumentParser:
    name = program()
    parser = Parser(
        prog=name,
        description="Live speech-emotion analysis (arousal and valence) in the terminal.",
    )
    parser.add_argument("--version", action="version", version=f"streamser {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    model = sub.add_parser("model", help="inspect or fetch the model weights")
    msub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    info = msub.add_parser("info", help="where the weights are, size, sha256, parameters, device")
    _add_model_args(info)
    info.add_argument(
        "--numerics",
        action="store_true",
        help="also run a few windows in fp32 and show the residual stream's peak per layer and "
        "its headroom to fp16's limit",
    )
    info.add_argument(
        "--precision", choices=PRECISIONS, help="the precision path to describe (default: device's)"
    )
    info.set_defaults(handler=_model_info)
    fetch = msub.add_parser("fetch", help="download the weights into the Hugging Face cache")
    _add_model_args(fetch)
    fetch.set_defaults(handler=_model_fetch)

    listen = sub.add_parser(
        "listen",
        help="analyse the microphone (or a file) live",
        description="Live arousal/valence from the microphone or a file. Ctrl+C or q ends the "
        "run; the session is kept on disk.",
    )
    _add_listen_args(listen)
    from streamser.commands.serve_cmd import add_remote_args, add_serve_args

    add_remote_args(listen)
    listen.set_defaults(handler=_listen)

    demo = sub.add_parser(
        "demo", help="the dashboard on a bundled speech clip (no microphone or weights needed)"
    )
    _add_model_args(demo)
    _add_speed_args(demo)
    _add_headless(demo, "JSON lines on stdout")
    _add_log_dir(demo, "where the session is written")
    _switch(demo, "--no-log", "log", False, "do not write a session")
    demo.set_defaults(handler=_demo)

    from streamser.commands.bench_cmd import add_bench_args

    bench = sub.add_parser(
        "bench", help="speed and memory of the full-size model on this machine (random weights)"
    )
    add_bench_args(bench)
    bench.set_defaults(handler=_bench)

    from streamser.commands.tune_cmd import add_tune_args

    tune = sub.add_parser(
        "tune",
        help="measure fp32, half, int8 (and onnxruntime) for the model on this machine, in about "
        "two minutes, and store the fastest accurate one for --precision auto",
    )
    _add_model_args(tune)
    add_tune_args(tune)
    tune.set_defaults(handler=_tune)

    devices = sub.add_parser("devices", help="list audio input devices")
    devices.set_defaults(handler=_devices)

    config = sub.add_parser("config", help="print the effective settings and the config file path")
    config.set_defaults(handler=_config)

    _add_session_commands(sub)

    analyze = sub.add_parser("analyze", help="analyse audio files offline, as fast as possible")
    analyze.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR")
    analyze.add_argument(
        "-o", "--output", required=True,
        help="result .jsonl, .csv or .parquet (with --ray: .parquet or a directory)",
    )  # fmt: skip
    analyze.add_argument(
        "--batch", type=int,
        help="windows per model call, 1 or more (default 8 on a CPU, 64 on a GPU)",
    )  # fmt: skip
    analyze.add_argument(
        "--workers", type=int,
        help="processes that decode, resample and detect speech ahead of the model "
        "(default: one per core but one, at most 8; 0: all in one process, file by file)",
    )  # fmt: skip
    r = analyze.add_argument_group("Ray (pip install 'streamser[ray]')")
    r.add_argument(
        "--ray", nargs="?", const="local", metavar="ADDRESS",
        help="run on Ray: alone, a Ray started on this machine (loopback only); 'auto' or "
        "ray://host:port: a running cluster ('ray start --head')",
    )  # fmt: skip
    r.add_argument(
        "--actors", type=int, help="with --ray: model actors, one model each (default 1)"
    )
    _add_model_args(analyze)
    _add_speed_args(analyze)
    _add_window_args(analyze)
    _add_stream_args(analyze)
    analyze.set_defaults(handler=_analyze)

    serve = sub.add_parser(
        "serve",
        help="one model for many remote streams: WebSocket clients, listen --server, browsers",
    )
    _add_model_args(serve)
    _add_speed_args(serve)
    add_serve_args(serve)
    _add_live_output_args(serve, wait=False)
    serve.set_defaults(handler=_serve)
    return parser


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("streamser: %(levelname)s: %(message)s"))
    log = logging.getLogger("streamser")
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    _setup_logging(args.verbose)
    from streamser.console import StdoutGone, silence_stdout
    from streamser.errors import StreamserError

    try:
        return handler(args)
    except StreamserError as e:
        print(f"streamser: error: {e}", file=sys.stderr)
        return 2
    except StdoutGone:  # stdout's reader left (``| head -1``): nothing more to say
        return 0
    except BrokenPipeError:  # the same, from a write that did not go through write_out
        silence_stdout()
        return 0
    except KeyboardInterrupt:
        return 130
