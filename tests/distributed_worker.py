"""One rank of the torch.distributed test (``test_scale.py``): run as
``python distributed_worker.py RANK WORLD INIT_FILE OUT_DIR``.

Every rank builds the same model and probe, computes the features under a
gloo process group and logs them (and is refused background logging); it saves what it got and how many
sequence-steps its model ran, so the test can compare with one process.
"""

import os
import sys

import numpy as np
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

import tensorboard_rnn_units as rnn_units
from tensorboard_rnn_units.cells import as_step_model


class Counting:
    """A StepModel that counts the input rows it steps (how much work this rank did) and records the
    batch size of every zero state asked for."""

    def __init__(self, rnn):
        self.inner = as_step_model(rnn)
        self.input_size, self.hidden_size, self.signals = rnn.input_size, rnn.hidden_size, self.inner.signals
        self.rows, self.starts = 0, []

    def initial_state(self, batch_size):
        self.starts.append(batch_size)
        return self.inner.initial_state(batch_size)

    def step(self, x, state, signal):
        self.rows += x.shape[0]
        return self.inner.step(x, state, signal)

    def readout_input(self, state):
        return self.inner.readout_input(state)


def model_and_probe():
    torch.manual_seed(0)
    rnn = nn.RNN(3, 16, batch_first=True).double()
    head = nn.Linear(16, 3).double()
    x = torch.rand(40, 12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(40) % 4
    return rnn, head, rnn_units.Probe(x, window=4, labels=labels)


def main(rank, world, init_file, out_dir):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        rnn, head, probe = model_and_probe()
        counting = Counting(rnn)
        features = rnn_units.compute_unit_features(
            counting, probe, readout=head, rollout=3, weighting=("top", "relu", "bottom"), batch_size=45
        )
        with SummaryWriter(os.path.join(out_dir, f"rank{rank}")) as writer:
            rnn_units.add_rnn_units(writer, "u", rnn, probe, global_step=0, readout=head, rollout=3)
            try:  # a background step's collectives would interleave with training's
                rnn_units.add_rnn_units(writer, "u", rnn, probe, global_step=1, readout=head, background=True)
                refused = ""
            except ValueError as e:
                refused = str(e)
        arrays = {"rows": np.array(counting.rows), "refused": np.array(refused), "signal_mean": features.signal_mean.numpy(),
                  "mean_rollout": features.mean_rollout.numpy(), "sample": features.activation_sample.numpy()}
        for name in features.weightings:
            w = features[name]
            for field in ("average", "rollout", "effective_sample_size", "class_weight", "exemplar_sequence",
                          "exemplar_end", "exemplar_signal", "position_share"):
                arrays[f"{name}/{field}"] = getattr(w, field).numpy()
        np.savez(os.path.join(out_dir, f"rank{rank}.npz"), **arrays)
    finally:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
