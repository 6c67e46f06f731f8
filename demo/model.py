"""The demo's models. ``RowPredictor``, the research note's: an RNN that
reads an image row by row and predicts the next row. ``CharPredictor``, the
text demo's: an LSTM that reads characters and predicts the next one.

The note's RNN has sigmoid units. ``nn.RNN`` offers only tanh and relu, and
we keep ``nn.RNN`` (fast fused kernels, natively supported by
``tensorboard_rnn_units``) with tanh, which is a sigmoid RNN reparametrised:
since ``sigmoid(a) = (tanh(a / 2) + 1) / 2``, a sigmoid RNN with state
``s = sigmoid(W x + U s' + b)`` and a tanh RNN with state ``h = 2 s - 1``,
weights ``W / 2``, ``U / 4`` and bias ``b / 2 + U 1 / 4`` compute the same
function, and the linear readout absorbs the affine map. The logged
pre-activation is half the sigmoid's ("pre-sigmoid") value, which the
``relu`` and ``top`` weightings do not see (positive scale). One
difference remains: the zero state of ``nn.RNN`` is the sigmoid state 0.5,
not 0.
"""

import torch
from torch import nn


class RowPredictor(nn.Module):
    """``nn.RNN`` over image rows plus a linear head giving next-row logits.

    Args:
      input_size: pixels per row (D).
      hidden_size: hidden units (H), 169 in the note (a 13x13 grid).
      num_layers: stacked RNN layers; the head reads the top one.
    """

    def __init__(self, input_size, hidden_size=169, num_layers=1):
        super().__init__()
        self.rnn = nn.RNN(
            input_size, hidden_size, num_layers=num_layers,
            nonlinearity="tanh", batch_first=True,
        )
        self.head = nn.Linear(hidden_size, input_size)

    def forward(self, rows):
        """Next-row logits ``(B, T, D)`` for rows ``(B, T, D)``; zero state per image."""
        hidden, _ = self.rnn(rows)
        return self.head(hidden)

    def readout(self, hidden):
        """Predicted next row in [0, 1] from top-layer states ``(B, H)``."""
        return torch.sigmoid(self.head(hidden))

    def loss(self, rows):
        """Binary cross-entropy of each row's prediction of the next row."""
        logits = self(rows[:, :-1])
        return nn.functional.binary_cross_entropy_with_logits(logits, rows[:, 1:])


class CharPredictor(nn.Module):
    """The text demo's model: ``nn.LSTM`` over embedded characters plus a
    linear head giving next-character logits.

    Args:
      vocab_size: tokens (V).
      hidden_size: hidden units (H).
      num_layers: stacked LSTM layers; the head reads the top one.
      embedding_size: size of each token's embedding, what the LSTM reads.
    """

    def __init__(self, vocab_size, hidden_size=128, num_layers=1, embedding_size=32):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding_size)
        self.rnn = nn.LSTM(embedding_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, tokens):
        """Next-token logits ``(B, T, V)`` for tokens ``(B, T)``; zero state per sequence."""
        hidden, _ = self.rnn(self.embed(tokens))
        return self.head(hidden)

    def readout(self, hidden):
        """Next-token logits ``(B, V)`` from top-layer states ``(B, H)``."""
        return self.head(hidden)

    def loss(self, tokens):
        """Cross-entropy of each position's prediction of the next token."""
        logits = self(tokens[:, :-1])
        return nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
