"""``add_rnn_units(..., background=True)``: measuring the units while training goes on.

The call deep-copies what it measures (the rnn, the readout, ``model`` and
the probe's ``embed``, in one copy so that shared modules stay shared) and
hands the copy to one worker thread per writer, which computes and writes
the step; steps are written in call order. Training changes the live model
meanwhile: the copy is the model as it was at the call. At most
``MAX_PENDING`` steps per writer wait or run; a further call waits for the
oldest. A step's failure is raised by its ``Future`` and by the next
``add_rnn_units`` or ``add_unit_features`` call, ``flush()`` or ``close()``
on that writer, so it is never lost.
"""

import concurrent.futures
import copy
import threading
import weakref

import torch
from torch import nn

MAX_PENDING = 2

# Set in the worker thread: features.py then leaves the global RNGs alone, since forking
# them there (saving and restoring their states) would rewind the training thread's draws.
state = threading.local()

_queues = weakref.WeakKeyDictionary()  # writer -> _Queue
_queues_lock = threading.Lock()


def snapshot(rnn, readout, model, probe):
    """``(rnn, readout, model, probe)`` copied as they are now: one deep copy of
    the first three and the probe's ``embed``; the probe's data is shared.
    On a GPU the copies are queued on the training thread's current stream,
    which the worker waits for (``ready``) before it reads them."""
    for name, value in (("readout", readout), ("probe's embed", probe.embed)):
        if value is not None and not isinstance(value, nn.Module) and \
                not isinstance(getattr(value, "__self__", None), nn.Module):
            raise ValueError(
                f"background: the {name} is a {type(value).__name__}, which would read the live model while "
                "training changes it; pass an nn.Module (e.g. nn.Sequential(model.head, nn.Sigmoid())) or a "
                "method of one (e.g. model.predict), or log with background=False"
            )
    try:
        rnn, readout, model, embed = copy.deepcopy((rnn, readout, model, probe.embed))
    except Exception as e:  # e.g. a module whose weight is computed (torch.nn.utils.weight_norm)
        raise ValueError(
            f"background: cannot copy the model to measure it while training goes on ({type(e).__name__}: {e}); "
            "log with background=False"
        ) from e
    if embed is not probe.embed:
        probe = copy.copy(probe)
        probe.embed = embed
    return rnn, readout, model, probe


def ready(*objects):
    """A CUDA event after the copies of ``objects``' tensors on each GPU they use (so the
    worker's stream waits for them, not the host), as ``[(device, event)]``."""
    modules = [m for o in objects for m in (o, getattr(o, "__self__", None)) if isinstance(m, nn.Module)]
    devices = {t.device for m in modules for t in (*m.parameters(), *m.buffers())}
    marks = []
    for device in devices:
        if device.type == "cuda":
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(device))
            marks.append((device, event))
    return marks


def submit(writer, tag, global_step, job, marks=()):
    """Runs ``job()`` in ``writer``'s worker after its earlier steps, once the
    CUDA events ``marks`` (``ready``) are reached; a ``Future`` of its result."""
    queue = _queue(writer)
    queue.settle(MAX_PENDING - 1)
    future = queue.executor.submit(_in_worker, job, marks)
    future.rnn_units_step = (tag, global_step)
    queue.futures.append(future)
    return future


def settle(writer, keep=0):
    """Waits until at most ``keep`` of ``writer``'s background steps are pending;
    raises the first failure among those that finished (each failure once)."""
    queue = _queues.get(writer)
    if queue is not None:
        queue.settle(keep)


def _in_worker(job, marks):
    state.active = True
    for device, event in marks:
        torch.cuda.current_stream(device).wait_event(event)
    return job()


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
        while len(self.futures) > keep:
            self.futures[0].exception()  # waits for it
            self._report()
        self._report()

    def _report(self):
        """Drops the finished steps from the head; raises the first failure among them."""
        while self.futures and self.futures[0].done():
            future = self.futures.pop(0)
            error = future.exception()
            if error is not None:
                tag, step = future.rnn_units_step
                raise RuntimeError(
                    f"add_rnn_units(background=True) of tag {tag!r} at global_step {step} failed: "
                    f"{type(error).__name__}: {error}"
                ) from error


def _queue(writer):
    with _queues_lock:
        queue = _queues.get(writer)
        if queue is None:
            queue = _queues[writer] = _Queue(writer)
        return queue
