"""``add_rnn_units(..., background=True)``: measuring the units while training goes on.

The call deep-copies what it measures (the rnn, the readout, ``model`` and
the probe's ``embed``, in one copy so that shared modules stay shared) and
hands the copy to one worker thread per writer, which computes and writes
the step; steps are written in call order. Training changes the live model
meanwhile: the copy is the model as it was at the call. At most
``MAX_PENDING`` steps per writer wait or run; a further call waits for the
oldest. A step's failure is raised by its ``Future`` and, once, by the
next ``add_rnn_units`` or ``add_unit_features`` call (which then logs
nothing), ``flush()`` or ``close()`` on that writer (which wait for every
pending step first), or printed at exit, so it is never lost.
"""

import atexit
import concurrent.futures
import contextlib
import copy
import sys
import threading
import weakref

import torch
from torch import nn

MAX_PENDING = 2

# While a step runs, Python's switch interval is at most this (seconds; Python's default is
# 0.005): a thread that wants the GIL waits up to the interval before the holder must let go,
# so the worker's stretches of pure Python (checks, encoding) stalled the training loop up to
# 5 ms each time. The digits demo's background overhead was 9-10% with 5 ms, 4% with 0.5 ms.
SWITCH_INTERVAL = 0.0005

# Set in the worker thread: features.py then leaves the global RNGs alone, since forking
# them there (saving and restoring their states) would rewind the training thread's draws.
state = threading.local()

_queues = weakref.WeakKeyDictionary()  # writer -> _Queue
_queues_lock = threading.Lock()


def snapshot(rnn, readout, model, probe):
    """``((rnn, readout, model, probe), marks)``: copies as they are now, one
    deep copy of the first three and the probe's ``embed`` (the probe's data
    is shared), and a CUDA event after the copies on the current stream of
    each GPU they are on, ``[(device, event)]``: the copies are queued there,
    and the worker's stream waits for them (not the host) before reading."""
    for name, value in (("readout", readout), ("probe's embed", probe.embed)):
        if value is not None and not isinstance(value, nn.Module) and \
                not isinstance(getattr(value, "__self__", None), nn.Module):
            raise ValueError(
                f"background: the {name} is a {type(value).__name__}, which would read the live model while "
                "training changes it; pass an nn.Module (e.g. nn.Sequential(model.head, nn.Sigmoid())) or a "
                "method of one (e.g. model.predict), or log with background=False"
            )
    memo = {}
    try:
        rnn, readout, model, embed = copy.deepcopy((rnn, readout, model, probe.embed), memo)
    except torch.OutOfMemoryError:
        raise
    except Exception as e:  # e.g. a module whose weight is computed (torch.nn.utils.weight_norm)
        raise ValueError(
            f"background: cannot copy the model to measure it while training goes on ({type(e).__name__}: {e}); "
            "log with background=False"
        ) from e
    if embed is not probe.embed:
        probe = copy.copy(probe)
        probe.embed = embed
    marks = []
    for device in {t.device for t in memo.values() if isinstance(t, torch.Tensor) and t.is_cuda}:
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(device))
        marks.append((device, event))
    return (rnn, readout, model, probe), marks


def submit(writer, tag, global_step, job, marks):
    """Runs ``job()`` in ``writer``'s worker after its earlier steps, once the
    CUDA events ``marks`` (``snapshot``'s) are reached; a ``Future`` of its result."""
    queue = _queue(writer)
    queue.settle(MAX_PENDING - 1)
    future = queue.executor.submit(_in_worker, job, marks, torch.get_num_threads())
    future.rnn_units_step = (tag, global_step)
    queue.futures.append(future)
    return future


def settle(writer, keep=0):
    """Waits until at most ``keep`` of ``writer``'s background steps are pending;
    then raises the failures among those that finished, if any (each once, in
    one ``RuntimeError``: the call that raises it logs nothing)."""
    queue = _queues.get(writer)
    if queue is not None:
        queue.settle(keep)


def _in_worker(job, marks, threads):
    state.active = True
    # The caller's torch thread count (torch.get_num_threads() is the calling thread's). torch
    # applies a count to a new thread once, at its first parallel kernel: without this, a count
    # the training thread changed after the worker started would not reach the worker.
    torch.set_num_threads(threads)
    for device, event in marks:
        torch.cuda.current_stream(device).wait_event(event)
    with _short_switch_interval():
        return job()


_switch_lock = threading.Lock()
_switch = {"running": 0, "saved": None, "ours": None}  # steps running, the interval before, the one set


@contextlib.contextmanager
def _short_switch_interval():
    """``sys.setswitchinterval`` at most ``SWITCH_INTERVAL`` while any worker runs a step;
    the interval before is restored after the last, unless someone changed it meanwhile."""
    with _switch_lock:
        if _switch["running"] == 0:
            _switch["saved"] = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch["saved"], SWITCH_INTERVAL))
            _switch["ours"] = sys.getswitchinterval()
        _switch["running"] += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch["running"] -= 1
            if _switch["running"] == 0 and sys.getswitchinterval() == _switch["ours"]:
                sys.setswitchinterval(_switch["saved"])


class _Queue:
    def __init__(self, writer):
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rnn_units")
        self.futures = []  # pending or not yet reported, in call order
        # The writer's flush and close wait for its steps first (closing even when one failed).
        for name in ("flush", "close"):
            setattr(writer, name, self._waiting(writer, getattr(writer, name), closes=name == "close"))

    def _waiting(self, writer, original, closes):
        def wait_then(*args, **kwargs):
            try:
                self.settle(0)
            finally:
                if closes:
                    with _queues_lock:
                        _queues.pop(writer, None)
                    for name in ("flush", "close"):
                        vars(writer).pop(name, None)  # the class's own methods again
                    self.executor.shutdown(wait=False)
                original(*args, **kwargs)

        wait_then.__doc__ = original.__doc__
        return wait_then

    def settle(self, keep):
        for future in self.futures[: max(len(self.futures) - keep, 0)]:
            future.exception()  # waits for it, failed or not
        failed = []
        while self.futures and self.futures[0].done():  # drop the finished ones from the head
            future = self.futures.pop(0)
            if future.exception() is not None:
                failed.append(future)
        if failed:
            error, (tag, step) = failed[0].exception(), failed[0].rnn_units_step
            more = f" (and {len(failed) - 1} later steps: {[f.rnn_units_step[1] for f in failed[1:]]})" \
                if len(failed) > 1 else ""
            raise RuntimeError(
                f"add_rnn_units(background=True) of tag {tag!r} at global_step {step} failed{more}: "
                f"{type(error).__name__}: {error}"
            ) from error


@atexit.register
def _report_at_exit():
    """Failures nobody collected, on stderr (the worker threads have finished by now)."""
    for queue in list(_queues.values()):
        try:
            queue.settle(0)
        except RuntimeError as e:
            print(f"tensorboard_rnn_units: {e}", file=sys.stderr)


def _queue(writer):
    with _queues_lock:
        queue = _queues.get(writer)
        if queue is None:
            queue = _queues[writer] = _Queue(writer)
        return queue
