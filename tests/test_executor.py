"""The batching executor: one thread runs the model for every caller.

Threads are synchronised with events only: ``EchoModel`` signals when a forward starts and
waits on a gate the test opens, so "the model is busy while others submit" is a fact, not a
hope. Every test ends by checking the counters' books balance.
"""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError, Future

import numpy as np
import pytest

from streamser.constants import WINDOW_SAMPLES
from streamser.contracts import AnalysisModel
from streamser.engine.executor import (
    GPU_MAX_WAIT_S,
    Executor,
    ExecutorClosedError,
    ExecutorConfig,
    ExecutorError,
    ExecutorFullError,
)
from tests.model_standins import EchoModel, window_with_id

WAIT_S = 5.0
"""Upper bound on any wait for a stand-in; a healthy run never comes near it."""
MODEL_WAIT_S = 120.0
"""The same for the demo network, whose forward slows a lot on a shared, busy 2-core machine."""


def result(f: Future[np.ndarray], timeout_s: float = WAIT_S) -> np.ndarray:
    return f.result(timeout=timeout_s)


def assert_books_balance(ex: Executor) -> None:
    s = ex.stats()
    assert s.queue_depth == 0 and s.in_flight == 0
    assert s.windows_run + s.failed + s.cancelled == s.submitted


def busy(ex: Executor, model: EchoModel, window_id: int = 0) -> Future[np.ndarray]:
    """Submit one window and return once the model is running it (and blocked on its gate)."""
    f = ex.submit(window_with_id(window_id))
    assert model.entered.wait(WAIT_S)
    return f


def release_when_closed(ex: Executor, gate: threading.Event) -> threading.Thread:
    """A thread that opens ``gate`` only once ``ex`` refuses work, i.e. after stop() began.

    Its submit either fails at once (stop already flagged) or blocks on the full queue until
    stop wakes it: both prove the order without sleeping.
    """

    def run() -> None:
        with pytest.raises(ExecutorClosedError):
            ex.submit(window_with_id(999))
        gate.set()

    t = threading.Thread(target=run, name="test-release")
    t.start()
    return t


def test_config_defaults_wait_on_a_gpu_only() -> None:
    assert ExecutorConfig().resolved_max_wait_s("cpu") == 0.0
    assert ExecutorConfig().resolved_max_wait_s("cuda") == GPU_MAX_WAIT_S
    assert ExecutorConfig(max_wait_s=0.5).resolved_max_wait_s("cpu") == 0.5
    with pytest.raises(ValueError):
        ExecutorConfig(max_batch=0)
    assert Executor(EchoModel(device="cuda")).max_wait_s == GPU_MAX_WAIT_S


def test_batches_across_callers_each_future_gets_its_own_row_in_order() -> None:
    gate = threading.Event()
    model = EchoModel(gate)
    with Executor(model, ExecutorConfig(max_batch=8)) as ex:
        assert ex._thread.name == "streamser-executor" and ex._thread.daemon
        first = busy(ex, model, 0)
        futures: dict[int, list[tuple[int, Future[np.ndarray]]]] = {}

        def caller(k: int) -> None:
            ids = [100 * (k + 1) + j for j in range(3)]
            futures[k] = [(i, ex.submit(window_with_id(i))) for i in ids]

        callers = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
        for t in callers:
            t.start()
        for t in callers:
            t.join(WAIT_S)
        assert ex.stats().queue_depth == 12
        gate.set()
        assert result(first)[0] == 0
        for k, submitted in futures.items():
            positions = []
            for window_id, f in submitted:
                row = result(f)
                assert row[0] == window_id  # its own row
                positions.append((row[1], row[2]))  # (call, row in call)
            assert positions == sorted(positions), f"caller {k} out of order"
    assert model.batch_sizes == [1, 8, 4]
    stats = ex.stats()
    assert stats.batch_sizes == {1: 1, 8: 1, 4: 1} and stats.batches_run == 3
    assert stats.windows_run == 13 and stats.queue_wait_s_max >= 0
    assert stats.mean_batch_size == pytest.approx(13 / 3)
    assert_books_balance(ex)


def test_max_batch_is_respected_and_submit_many_keeps_order() -> None:
    model = EchoModel()
    ex = Executor(model, ExecutorConfig(max_batch=3))
    windows = np.stack([window_with_id(i) for i in range(10)])
    futures = ex.submit_many(windows)  # queued before the thread starts: one known backlog
    windows[:] = -1.0  # the executor copied them
    with ex:
        rows = [result(f) for f in futures]
    assert [r[0] for r in rows] == list(range(10))
    assert model.batch_sizes == [3, 3, 3, 1]
    assert ex.stats().batch_sizes == {3: 3, 1: 1}
    assert_books_balance(ex)


@pytest.fixture(scope="module")
def demo() -> AnalysisModel:
    from streamser.model import load_model

    return load_model("demo", compute="cpu")


def test_results_equal_the_models_own_logits(demo: AnalysisModel) -> None:
    model = demo
    x = np.random.default_rng(7).standard_normal((3, WINDOW_SAMPLES)).astype(np.float32)
    with Executor(model, ExecutorConfig(max_batch=2)) as ex:
        futures = [*ex.submit_many(x[:2]), ex.submit(x[2])]
        got = np.stack([result(f, MODEL_WAIT_S) for f in futures])
    np.testing.assert_allclose(got, model.logits(x), rtol=0, atol=1e-6)
    assert got.dtype == np.float32 and got.shape == (3, 6)
    assert_books_balance(ex)


def test_a_failing_window_fails_only_its_own_future() -> None:
    model = EchoModel(fail_ids=frozenset({2}))
    ex = Executor(model, ExecutorConfig(max_batch=8))
    futures = ex.submit_many(np.stack([window_with_id(i) for i in range(4)]))
    with ex:
        with pytest.raises(ValueError, match="refusing"):
            result(futures[2])
        assert [result(futures[i])[0] for i in (0, 1, 3)] == [0, 1, 3]
    # One batch of 4 raised; each row ran once more alone; nothing ran a third time.
    assert model.batch_sizes == [4, 1, 1, 1, 1]
    s = ex.stats()
    assert (s.batches_run, s.forward_calls, s.forward_errors, s.row_retries) == (1, 5, 2, 4)
    assert (s.windows_run, s.failed) == (3, 1)
    assert_books_balance(ex)


def test_bad_inputs_fail_at_submit_or_in_their_own_future() -> None:
    model = EchoModel()
    with Executor(model) as ex:
        with pytest.raises(ValueError, match="shape"):
            ex.submit(np.zeros(16_000, dtype=np.float32))
        with pytest.raises(ValueError, match="float32"):
            ex.submit(np.zeros(WINDOW_SAMPLES, dtype=np.float64))
        with pytest.raises(ValueError, match="shape"):
            ex.submit_many(np.zeros((2, 3, WINDOW_SAMPLES), dtype=np.float32))
        windows = np.stack([window_with_id(i) for i in range(3)])
        windows[1, 5] = np.nan
        futures = ex.submit_many(windows)
        with pytest.raises(ValueError, match="non-finite"):
            result(futures[1])
        assert result(futures[0])[0] == 0 and result(futures[2])[0] == 2
    assert ex.stats().submitted == 3  # rejected shapes were never accepted
    assert ex.stats().failed == 1
    assert_books_balance(ex)


def test_stop_with_drain_completes_what_was_submitted() -> None:
    gate = threading.Event()
    model = EchoModel(gate)
    ex = Executor(model, ExecutorConfig(max_batch=2, max_pending=3, submit_timeout_s=WAIT_S))
    ex.start()
    futures = [busy(ex, model, 0)] + [ex.submit(window_with_id(i)) for i in (1, 2, 3)]
    releaser = release_when_closed(ex, gate)
    assert ex.stop(drain=True, timeout_s=WAIT_S)
    releaser.join(WAIT_S)
    assert [result(f)[0] for f in futures] == [0, 1, 2, 3]
    assert not ex.alive and model.batch_sizes == [1, 2, 1]
    with pytest.raises(ExecutorClosedError):
        ex.submit(window_with_id(4))
    with pytest.raises(ExecutorClosedError):
        ex.start()
    assert ex.stop() and ex.stop(drain=False)  # idempotent
    assert_books_balance(ex)


def test_stop_without_drain_cancels_waiting_work() -> None:
    gate = threading.Event()
    model = EchoModel(gate)
    ex = Executor(model, ExecutorConfig(max_pending=3, submit_timeout_s=WAIT_S)).start()
    running = busy(ex, model, 0)
    waiting = [ex.submit(window_with_id(i)) for i in (1, 2, 3)]
    releaser = release_when_closed(ex, gate)
    assert ex.stop(drain=False, timeout_s=WAIT_S)
    releaser.join(WAIT_S)
    assert result(running)[0] == 0  # the batch already running completes
    assert all(f.cancelled() for f in waiting)
    with pytest.raises(CancelledError):
        result(waiting[0])
    s = ex.stats()
    assert (s.windows_run, s.cancelled, s.submitted) == (1, 3, 4)
    assert_books_balance(ex)


def test_stop_timing_out_cancels_what_still_waits() -> None:
    gate = threading.Event()
    model = EchoModel(gate)
    ex = Executor(model).start()
    running = busy(ex, model, 0)
    waiting = ex.submit(window_with_id(1))
    assert not ex.stop(drain=True, timeout_s=0.01)  # the model is still blocked
    assert waiting.cancelled()
    gate.set()
    assert result(running)[0] == 0
    ex._thread.join(WAIT_S)
    assert not ex.alive
    assert_books_balance(ex)


def test_stop_before_start_cancels_and_context_manager_starts_and_drains() -> None:
    ex = Executor(EchoModel())
    f = ex.submit(window_with_id(1))
    assert ex.stop()
    assert f.cancelled()
    assert_books_balance(ex)
    with Executor(EchoModel()) as ex2:
        assert ex2.start() is ex2  # again: a no-op
        g = ex2.submit(window_with_id(2))
    assert g.done() and result(g)[0] == 2 and not ex2.alive


def test_a_full_queue_blocks_then_fails_with_a_clear_error() -> None:
    gate = threading.Event()
    model = EchoModel(gate)
    cfg = ExecutorConfig(max_pending=2, submit_timeout_s=0.01)
    with Executor(model, cfg) as ex:
        busy(ex, model, 0)
        ex.submit_many(np.stack([window_with_id(1), window_with_id(2)]))
        with pytest.raises(ExecutorFullError, match="falling behind"):
            ex.submit(window_with_id(3))
        with pytest.raises(ValueError, match="max_pending"):
            ex.submit_many(np.stack([window_with_id(i) for i in range(3)]))
        s = ex.stats()
        assert (s.full_events, s.full_timeouts, s.queue_depth, s.max_pending) == (1, 1, 2, 2)
        gate.set()
    assert ex.stats().windows_run == 3
    assert_books_balance(ex)


def test_newest_wins_replaces_a_waiting_window_of_the_same_key() -> None:
    gate = threading.Event()
    model = EchoModel(gate)
    with Executor(model, ExecutorConfig(max_batch=8)) as ex:
        first = ex.submit(window_with_id(0), key="a", replace=True)
        assert model.entered.wait(WAIT_S)  # "a"'s first window is running: not replaceable
        stale = ex.submit(window_with_id(1), key="a", replace=True)
        other = ex.submit(window_with_id(2), key="b", replace=True)
        newest = ex.submit(window_with_id(3), key="a", replace=True)
        assert stale.cancelled() and ex.stats().queue_depth == 2
        gate.set()
        rows = [result(f) for f in (first, newest, other)]
    assert [r[0] for r in rows] == [0, 3, 2]
    assert rows[1][2] == 0 and rows[2][2] == 1  # the newest took the stale one's place
    s = ex.stats()
    assert (s.superseded, s.cancelled, s.windows_run) == (1, 1, 3)
    assert_books_balance(ex)


def test_a_caller_may_cancel_a_waiting_future() -> None:
    gate = threading.Event()
    model = EchoModel(gate)
    with Executor(model) as ex:
        busy(ex, model, 0)
        dropped, kept = ex.submit(window_with_id(1)), ex.submit(window_with_id(2))
        assert dropped.cancel()
        gate.set()
        assert result(kept)[0] == 2
    assert model.batch_sizes == [1, 1]
    assert ex.stats().cancelled == 1
    assert_books_balance(ex)


def test_a_gpu_style_wait_fills_the_batch() -> None:
    model = EchoModel()
    with Executor(model, ExecutorConfig(max_batch=4, max_wait_s=WAIT_S)) as ex:
        futures = [ex.submit(window_with_id(i)) for i in range(4)]
        assert [result(f)[0] for f in futures] == [0, 1, 2, 3]
    assert model.batch_sizes == [4]  # a full batch runs at once, without waiting out the wait


def test_bad_model_output_fails_the_rows_not_the_thread() -> None:
    class Short(EchoModel):
        def logits(self, inputs: np.ndarray) -> np.ndarray:
            out = super().logits(inputs)
            out[inputs[:, 0] == 1] = np.inf
            return out[:-1] if len(inputs) > 1 else out

    model = Short()
    ex = Executor(model)
    futures = ex.submit_many(np.stack([window_with_id(i) for i in range(3)]))
    with ex:
        with pytest.raises(ExecutorError, match="non-finite"):
            result(futures[1])
        assert result(futures[0])[0] == 0 and result(futures[2])[0] == 2
        assert ex.alive
    assert_books_balance(ex)


def test_an_unexpected_error_fails_pending_futures_and_closes() -> None:
    class Fatal(BaseException):
        pass

    gate = threading.Event()

    class Dying(EchoModel):
        def logits(self, inputs: np.ndarray) -> np.ndarray:
            super().logits(inputs)
            raise Fatal("boom")

    model = Dying(gate)
    ex = Executor(model).start()
    running = busy(ex, model, 0)
    waiting = ex.submit(window_with_id(1))
    gate.set()
    for f in (running, waiting):
        with pytest.raises(ExecutorError, match="executor thread failed"):
            result(f)
    ex._thread.join(WAIT_S)
    assert isinstance(ex.error, Fatal) and not ex.alive
    with pytest.raises(ExecutorClosedError):
        ex.submit(window_with_id(2))
    assert ex.stop()
    assert ex.stats().failed == 2
    assert_books_balance(ex)


def test_stop_from_a_done_callback_still_drains() -> None:
    model = EchoModel()
    ex = Executor(model, ExecutorConfig(max_batch=1))
    futures = ex.submit_many(np.stack([window_with_id(i) for i in range(3)]))
    stopped: list[bool] = []
    futures[0].add_done_callback(lambda _: stopped.append(ex.stop(drain=True)))
    ex.start()
    assert [result(f)[0] for f in futures] == [0, 1, 2]
    ex._thread.join(WAIT_S)
    assert stopped == [True] and not ex.alive
    assert_books_balance(ex)
