"""Recurrent classifiers: SimpleRNN (Elman 1990), LSTM (Hochreiter & Schmidhuber 1997), GRU (Cho et al. 2014).

The notes (seed 002, "BaseRNN") build an RNN cell by hand, train it on the toy "hello" → "ohlol", then
replace the one-hot input with an Embedding and the cell with LSTM/GRU. Here one builder covers all of
it: `cell="simple"|"lstm"|"gru"` (registered as "rnn", "lstm", "gru").

Inputs, by the rank of `input_shape`:
  (H, W, C) an image, read as H time steps of W·C features (MNIST: 28 rows of 28 pixels; digits: 8×8), or with
            `read="pixels"` as H·W time steps of C features, one pixel at a time in raster order: the "sequential
            MNIST" of Le et al. 2015, a test of long-range memory (over its 784 steps a plain tanh RNN's gradient
            vanishes; experiments/studies/recurrent.toml asks it on the digits' 64);
  (T, F)    a sequence of feature vectors;
  (T,)      integer tokens in [0, vocab_size): one-hot encoded (`embedding=0`, the notes' first version)
            or an Embedding of that size (`embedding=N`, the notes' second version).
`sequence_output=True` puts a softmax on every time step (the toy's per-character prediction);
otherwise the last step's state is classified. `num_layers` stacks cells, `bidirectional` wraps them.
`hello_ohlol()` trains the notes' toy and returns the predicted string (tests/test_nets_a.py checks it).
"""

from ..lazy import keras, layers

from ..registry import register
from . import blocks

CELLS = {"simple": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}  # keras.layers classes
READS = ("rows", "pixels")


def rnn(input_shape=(28, 28, 1), num_classes=10, *, cell="lstm", units=128, num_layers=1, bidirectional=False,
        activation="tanh", dropout=0.0, embedding=0, vocab_size=0, sequence_output=False, weight_decay=0.0,
        initializer="glorot_uniform", read="rows", name="rnn"):
    """Recurrent classifier over image rows, feature sequences or token sequences."""
    if cell not in CELLS:
        raise blocks.KnobError(f"cell must be one of {', '.join(CELLS)}, not {cell!r}")
    if read not in READS:
        raise blocks.KnobError(f"read must be one of {', '.join(READS)}, not {read!r}")
    if len(input_shape) == 1:
        x = inp = keras.Input(shape=tuple(input_shape), dtype="int32", name="input")
        vocab = vocab_size or num_classes
        if embedding:
            x = layers.Embedding(vocab, embedding, name="embedding")(x)
        else:
            x = layers.CategoryEncoding(vocab, output_mode="one_hot", name="one_hot")(x)
    elif len(input_shape) in (2, 3):
        x = inp = blocks.inputs(input_shape)
        if len(input_shape) == 3:
            h, w, c = input_shape
            x = layers.Reshape((h, w * c) if read == "rows" else (h * w, c), name=read)(x)
    else:
        raise ValueError(f"rnn: input_shape must be (H, W, C), (T, F) or (T,), not {tuple(input_shape)}")
    reg = blocks.regularizer(weight_decay)
    for i in range(1, num_layers + 1):
        last = i == num_layers
        layer = getattr(layers, CELLS[cell])(units, activation=activation, return_sequences=sequence_output or not last,
                            dropout=dropout, kernel_initializer=initializer, kernel_regularizer=reg,
                            name=f"{cell}{i}")
        if bidirectional:
            layer = layers.Bidirectional(layer, name=f"bi{cell}{i}")
        x = layer(x)
    out = blocks.classifier(x, num_classes, weight_decay=weight_decay, initializer=initializer)
    return keras.Model(inp, out, name=name)


register("rnn", family="rnn", input_shape=(28, 28, 1), cell="simple",
         summary="SimpleRNN (Elman) classifier; images are read row by row")(rnn)
register("lstm", family="rnn", input_shape=(28, 28, 1), cell="lstm",
         summary="LSTM classifier (Hochreiter & Schmidhuber 1997); images are read row by row")(rnn)
register("gru", family="rnn", input_shape=(28, 28, 1), cell="gru",
         summary="GRU classifier (Cho et al. 2014); images are read row by row")(rnn)

TOY_VOCAB = "ehlo"  # the notes' idx2char = ['e', 'h', 'l', 'o']


def encode(text, vocab=TOY_VOCAB):
    return [vocab.index(ch) for ch in text]


def decode(indices, vocab=TOY_VOCAB):
    return "".join(vocab[int(i)] for i in indices)


def hello_ohlol(cell="simple", embedding=0, units=8, epochs=100, lr=0.1, seed=0):
    """The notes' toy: learn to map "hello" to "ohlol" one character per step; returns the prediction.

    Same setup as the notes: 4-letter vocabulary, one-hot input (or an Embedding), a tiny hidden state,
    per-step softmax, cross-entropy, Adam with lr 0.1, one sequence.
    """
    import numpy as np

    keras.utils.set_random_seed(seed)
    model = rnn((5,), len(TOY_VOCAB), cell=cell, units=units, embedding=embedding, sequence_output=True,
                name=f"hello_{cell}")
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy")
    x = np.array([encode("hello")], dtype="int32")
    y = np.array([encode("ohlol")], dtype="int32")
    # One update per "epoch" of the one-sequence data set, as in the notes; repeated rows run them in one fit.
    model.fit(np.repeat(x, epochs, 0), np.repeat(y, epochs, 0), batch_size=1, epochs=1, shuffle=False, verbose=0)
    return decode(np.argmax(model.predict(x, verbose=0)[0], axis=-1))
