"""Command line: builds the configuration and hands it to a subcommand; no logic of its own."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from streamser.constants import BACKENDS, DEFAULT_MODEL_ID
from streamser.version import __version__

Handler = Callable[[argparse.Namespace], int]


def _add_model_args(
    p: argparse.ArgumentParser, default_model: str | None = DEFAULT_MODEL_ID
) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default=default_model,
        help=f"hub id, local directory, or 'demo' (default: {DEFAULT_MODEL_ID})",
    )
    g.add_argument("--revision", help="hub revision (default: the model card's revision)")
    g.add_argument(
        "--compute",
        default=None,
        choices=("auto", "cpu", "cuda", "mps"),
        help="where to run the model (default: auto = cuda, then mps, then cpu)",
    )
    g.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="skip the one-time sha256 check of the weights",
    )


def _add_speed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quantize", choices=("int8",), default=None, help="dynamic int8 quantisation (CPU)"
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="torch (default) or onnxruntime: CPU fp32, ~1.2x faster on AVX2 CPUs; needs "
        "pip install 'streamser[onnx]'; the first run exports the model once (~20 s, ~6 GB)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamser",
        description="Live speech-emotion analysis (arousal and valence) in the terminal.",
    )
    parser.add_argument("--version", action="version", version=f"streamser {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    model = sub.add_parser("model", help="inspect or fetch the model weights")
    msub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    info = msub.add_parser("info", help="where the weights are, size, sha256, parameters, device")
    _add_model_args(info)
    info.set_defaults(handler="streamser.commands.model_cmd:model_info")
    fetch = msub.add_parser("fetch", help="download the weights into the Hugging Face cache")
    _add_model_args(fetch)
    fetch.set_defaults(handler="streamser.commands.model_cmd:model_fetch")
    listen = sub.add_parser(
        "listen",
        help="analyse the microphone (or a file) live",
        description="Live arousal/valence from the microphone or a file. Ctrl+C or q ends the "
        "run; the session is kept on disk.",
    )
    _add_listen_args(listen)
    listen.set_defaults(handler="streamser.commands.listen:listen")

    demo = sub.add_parser(
        "demo", help="the dashboard on a bundled speech clip (no microphone or weights needed)"
    )
    _add_model_args(demo, default_model=None)
    demo.add_argument("--headless", action="store_true", help="JSON lines on stdout")
    demo.add_argument("--log-dir", metavar="DIR", help="where the session is written")
    demo.add_argument("--no-log", action="store_true", help="do not write a session")
    demo.set_defaults(handler="streamser.commands.demo_cmd:demo")

    from streamser.commands.bench_cmd import add_bench_args

    bench = sub.add_parser(
        "bench", help="speed and memory of the full-size model on this machine (random weights)"
    )
    add_bench_args(bench)
    bench.set_defaults(handler="streamser.commands.bench_cmd:bench")

    devices = sub.add_parser("devices", help="list audio input devices")
    devices.set_defaults(handler="streamser.commands.info_cmd:devices")

    config = sub.add_parser("config", help="print the effective settings and the config file path")
    config.set_defaults(handler="streamser.commands.info_cmd:show_config")

    sessions = sub.add_parser("sessions", help="list recorded sessions, or delete some")
    sessions.add_argument("action", nargs="?", choices=("list", "delete"), default="list")
    sessions.add_argument("ids", nargs="*", metavar="ID", help="session ids to delete")
    _add_log_dir(sessions)
    sessions.set_defaults(handler="streamser.commands.session_cmd:sessions")

    replay = sub.add_parser("replay", help="replay a session's estimates (dashboard or --headless)")
    replay.add_argument("session", help="session id (or unique prefix), path, or 'latest'")
    replay.add_argument("--headless", action="store_true", help="JSON lines on stdout")
    replay.add_argument(
        "--speed", type=float, default=1.0, help="pace multiplier; 0 = as fast as possible"
    )
    _add_log_dir(replay)
    replay.set_defaults(handler="streamser.commands.session_cmd:replay")

    mark = sub.add_parser("mark", help="mark an event in a running (or finished) session")
    mark.add_argument("session", help="session id (or unique prefix), path, or 'latest'")
    mark.add_argument("note", help="what happened")
    mark.add_argument("--at", type=float, help="stream time in seconds (default: now)")
    _add_log_dir(mark)
    mark.set_defaults(handler="streamser.commands.session_cmd:mark")

    report = sub.add_parser("report", help="write a shareable figure of a session")
    report.add_argument("session", help="session id (or unique prefix), path, or 'latest'")
    report.add_argument("-o", "--output", required=True, help="report.png or report.html")
    _add_log_dir(report)
    report.set_defaults(handler="streamser.commands.session_cmd:report")

    analyze = sub.add_parser("analyze", help="analyse audio files offline, as fast as possible")
    analyze.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR")
    analyze.add_argument("-o", "--output", required=True, help="result .jsonl, .csv or .parquet")
    analyze.add_argument("--batch", type=int, default=8, help="windows per model call")
    _add_model_args(analyze, default_model=None)
    _add_speed_args(analyze)
    _add_window_args(analyze)
    analyze.set_defaults(handler="streamser.commands.analyze_cmd:analyze")
    return parser


def _add_log_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-dir", metavar="DIR", help="sessions directory (default: user data dir)")


def _add_window_args(p: argparse.ArgumentParser) -> None:
    w = p.add_argument_group("windows")
    w.add_argument("--hop", type=float, help="seconds between window ends (default 1.0)")
    w.add_argument(
        "--full-windows-only",
        action="store_true",
        help="first estimate after a full 3 s window instead of after 1 s (padded)",
    )
    w.add_argument(
        "--vad-threshold",
        type=float,
        help="speech fraction below which a window is non-speech (default 0.5)",
    )
    w.add_argument("--no-vad", action="store_true", help="no speech gate")
    w.add_argument(
        "--skip-non-speech",
        action="store_true",
        help="do not run the model on non-speech windows (saves compute)",
    )


def _add_listen_args(p: argparse.ArgumentParser) -> None:
    _add_model_args(p, default_model=None)
    _add_speed_args(p)
    a = p.add_argument_group("audio")
    a.add_argument("-d", "--device", help="input device: index or part of its name")
    a.add_argument("--samplerate", type=int, help="open the device at this rate (Hz)")
    a.add_argument("--channels", type=int, help="open the device with this many channels")
    a.add_argument("-i", "--input", metavar="FILE", help="replay a WAV/FLAC/OGG file instead")
    a.add_argument(
        "--fast", action="store_true", help="with --input: as fast as possible, every window"
    )
    a.add_argument(
        "--reconnect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="retry a lost input device every few seconds (default: on)",
    )
    _add_window_args(p)
    p.add_argument("--smooth-s", type=float, help="smoothing time constant, seconds (default 4)")
    o = p.add_argument_group("output")
    o.add_argument("--headless", action="store_true", help="JSON lines on stdout, no dashboard")
    o.add_argument("--log-dir", metavar="DIR", help="where sessions are written")
    o.add_argument("--no-log", action="store_true", help="do not write a session")
    o.add_argument("--record", action="store_true", help="record the captured audio too")


def _resolve(handler: str) -> Handler:
    import importlib

    module, _, name = handler.partition(":")
    return getattr(importlib.import_module(module), name)


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
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    _setup_logging(args.verbose)
    if getattr(args, "compute", "x") is None:
        args.compute = "auto"
    from streamser.errors import StreamserError

    try:
        return _resolve(args.handler)(args)
    except StreamserError as e:
        print(f"streamser: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
