"""See what each hidden unit of a PyTorch RNN has learned, in TensorBoard.

The summary API::

    import tensorboard_rnn_units as rnn_units
    probe = rnn_units.Probe(sequences, window=10, labels=labels)
    rnn_units.add_rnn_units(writer, "rnn/units", model.rnn, probe, global_step=step,
                            readout=nn.Sequential(model.head, nn.Sigmoid()), rollout=10)

This module imports torch lazily: TensorBoard loads the plugin (``plugin.py``)
from this package and must start without torch.
"""

_EXPORTS = {
    "Probe": "probe",
    "UnitFeatures": "features",
    "WeightedFeatures": "features",
    "compute_unit_features": "features",
    "StepModel": "cells",
    "add_rnn_units": "summary",
    "add_unit_features": "summary",
    "rnn_units_pb": "summary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
