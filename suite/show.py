"""`python -m suite show`: a per-layer table of a built network — output shape, parameters, multiply-adds,
receptive field, and for every convolution and pooling layer its output size worked by the notes' rule
(N − F + 2P)/S + 1.

Conventions (the README repeats them):
- MACs are multiply-accumulate operations for one example (1 MAC = 2 FLOPs). Counted: convolutions
  (H_out·W_out·C_out·F_h·F_w·C_in/groups; depthwise and separable convolutions by their parts), Dense
  (inputs × units at every position), recurrent layers (per time step × steps; SimpleRNN u(i+u), GRU
  3u(i+u), LSTM 4u(i+u); Bidirectional both directions) and BatchNormalization / LayerNormalization (one
  per element: at inference it is a scale-and-shift). Biases, activations, pooling, Add, Concatenate,
  Embedding look-ups and padding count 0. Zero-padded borders are counted as if they were data.
- Receptive field along H (axis 1): r_out = r_in + (F_eff − 1)·j_in, j_out = j_in·S, with the dilated
  kernel's effective size F_eff = d·(F − 1) + 1; merges (Add, Concatenate) take the largest. Layers that
  mix every position (Flatten, global pooling, Dense on a vector, a recurrent layer's last state) see
  "all" of the input.
- SAME padding is TensorFlow's: total P = max((⌈N/S⌉ − 1)·S + F_eff − N, 0) pixels, the odd one at the
  bottom/right; the formula shows P = total/2, so (N − F_eff + 2P)/S + 1 is the real output size.
- Layers that feed only auxiliary outputs (GoogLeNet's aux classifiers: training only) are marked `*`;
  the totals then also give the inference model (main output only).
"""

import fractions
import math
import pathlib

from .errors import UserError, one_line

HEADER = ("layer", "type", "output", "params", "MACs", "RF", "jump", "output size by (N − F + 2P)/S + 1")


# ---------------------------------------------------------------------------------------------- helpers

def _tuple(v, n):
    return tuple(v) if isinstance(v, (list, tuple)) else (v,) * n


def _shape(t):
    """A tensor's shape without the batch axis."""
    return tuple(t.shape[1:])


def _prod(xs):
    p = 1
    for x in xs:
        if x is None:
            return None
        p *= int(x)
    return p


def _num(x):
    """A number for the formula: 2·0.5 stays 0.5, 2·1 stays 1."""
    if isinstance(x, fractions.Fraction):
        return str(x.numerator) if x.denominator == 1 else f"{float(x):g}"
    return f"{x:g}" if isinstance(x, float) else str(x)


def same_pad(n, f, s, d=1):
    """TensorFlow's total SAME padding for input size n, kernel f, stride s, dilation d."""
    f_eff = d * (f - 1) + 1
    return max((math.ceil(n / s) - 1) * s + f_eff - n, 0)


def rule(n, f, s, padding, d=1):
    """(output size, formula text) for one spatial axis by the notes' rule (N − F + 2P)/S + 1."""
    if n is None:
        return None, ""
    padding = padding.lower()
    f_eff = d * (f - 1) + 1
    if padding == "same":
        total = same_pad(n, f, s, d)
    elif padding == "valid":
        total = 0
    else:  # causal etc.: not a 2-D conv/pool padding the notes' rule describes
        return None, ""
    num = n - f_eff + total
    out = num // s + 1
    if num < 0:
        out = 0
    p = fractions.Fraction(total, 2)
    core = f"({n}−{f_eff}+2·{_num(p)})/{s}"
    text = f"{core}+1 = {out}" if num % s == 0 else f"⌊{core}⌋+1 = {out}"
    notes = []
    if padding == "same":
        notes.append("SAME" + (f", pad {total // 2}+{total - total // 2}" if total % 2 else ""))
    if d != 1:
        notes.append(f"F={d}·({f}−1)+1={f_eff}")
    if notes:
        text += f" ({'; '.join(notes)})"
    return out, text


def _layers_mod():
    from keras import layers

    return layers


def _kind(layer):
    """'conv', 'depthwise', 'separable', 'transpose', 'pool', 'gpool', 'dense', 'rnn', 'bidir', 'norm',
    'model', 'input' or 'other'."""
    import keras

    L = _layers_mod()
    if isinstance(layer, keras.Model):
        return "model"
    if isinstance(layer, L.InputLayer):
        return "input"
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        return "separable"
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return "depthwise"
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        return "transpose"
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
        return "conv"
    if isinstance(layer, (L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
                          L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D)):
        return "gpool"
    if isinstance(layer, (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
                          L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D)):
        return "pool"
    if isinstance(layer, L.Dense):
        return "dense"
    if isinstance(layer, L.Bidirectional):
        return "bidir"
    if isinstance(layer, L.RNN):  # SimpleRNN, LSTM, GRU (and generic RNN wrappers)
        return "rnn"
    if isinstance(layer, (L.BatchNormalization, L.LayerNormalization)):
        return "norm"
    return "other"


def _rnn_macs(layer, in_shape):
    """MACs of a recurrent layer for one example: per step × steps (steps None → per step only)."""
    cell = layer.cell
    units = int(getattr(cell, "units", 0) or 0)
    i = int(in_shape[-1])
    gates = {"LSTMCell": 4, "GRUCell": 3}.get(type(cell).__name__, 1)
    per_step = gates * units * (i + units)
    steps = in_shape[0] if len(in_shape) >= 2 else 1
    return per_step * steps if steps is not None else per_step


def _macs(layer, kind, in_shapes, out_shapes):
    """Multiply-accumulates of one call of `layer` for one example (see the module docstring)."""
    if not in_shapes or not out_shapes:
        return 0
    ins, out = in_shapes[0], out_shapes[0]
    if kind == "conv":
        k = _prod(layer.kernel_size)
        return (_prod(out[:-1]) or 0) * out[-1] * k * (ins[-1] // layer.groups)
    if kind == "depthwise":
        return (_prod(out[:-1]) or 0) * out[-1] * _prod(layer.kernel_size)
    if kind == "separable":
        mid = ins[-1] * layer.depth_multiplier
        pos = _prod(out[:-1]) or 0
        return pos * mid * _prod(layer.kernel_size) + pos * mid * out[-1]
    if kind == "transpose":
        return (_prod(ins[:-1]) or 0) * ins[-1] * _prod(layer.kernel_size) * out[-1]
    if kind == "dense":
        return (_prod(ins[:-1]) or 0) * ins[-1] * out[-1]
    if kind == "rnn":
        return _rnn_macs(layer, ins)
    if kind == "bidir":
        return _rnn_macs(layer.forward_layer, ins) + _rnn_macs(layer.backward_layer, ins)
    if kind == "norm":
        return _prod(out) or 0
    return 0


def _weights(layer):
    total = sum(_prod(w.shape) for w in layer.weights)
    trainable = sum(_prod(w.shape) for w in layer.trainable_weights)
    return total, trainable


# RF of a tensor along axis 1: (size, jump) as Fractions, "all" (sees the whole input) or None (no spatial axis).
ALL = "all"


def _merge_rf(rfs):
    rfs = [r for r in rfs if r is not None]
    if not rfs:
        return None
    if any(r == ALL for r in rfs):
        return ALL
    return max(r[0] for r in rfs), max(r[1] for r in rfs)


def _rf(layer, kind, in_rf, in_shapes, out_shapes):
    """Receptive field (along H) of this layer's output, from its inputs'."""
    if in_rf is None or in_rf == ALL:
        return in_rf
    r, j = in_rf
    out = out_shapes[0] if out_shapes else ()
    if kind in ("conv", "depthwise", "separable", "pool"):
        f = _tuple(layer.pool_size if kind == "pool" else layer.kernel_size, 2)[0]
        s = _tuple(layer.strides, 2)[0] if layer.strides is not None else f
        d = _tuple(getattr(layer, "dilation_rate", 1), 2)[0]
        return r + (d * (f - 1)) * j, j * s
    if kind == "transpose":
        f = _tuple(layer.kernel_size, 2)[0]
        s = _tuple(layer.strides, 2)[0]
        j_out = j / s
        return r + (math.ceil(f / s) - 1) * j, j_out
    if kind in ("gpool",):
        return ALL
    if kind in ("rnn", "bidir"):
        return ALL  # the last state has read every step (and a step of a sequence output all before it)
    if len(out) < 2:  # a vector per example: Flatten, Dense on a vector, …
        return ALL
    L = _layers_mod()
    ins = in_shapes[0] if in_shapes else ()
    if isinstance(layer, (L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D,
                          L.Cropping1D, L.Cropping2D, L.Cropping3D)):
        return r, j  # a border added or removed: every output still sees the same pixels
    if isinstance(layer, (L.UpSampling1D, L.UpSampling2D, L.UpSampling3D)):
        return r, j / _tuple(layer.size, 2)[0]
    if len(ins) >= 2 and ins[0] and out[0] and out[0] < ins[0]:
        # An unknown layer that shrinks the map (e.g. ResNet's option-A shortcut, a strided slice):
        # read it as a 1×1 subsampling by k when ⌈N/k⌉ is the output size.
        k = round(ins[0] / out[0])
        if k >= 2 and math.ceil(ins[0] / k) == out[0]:
            return r, j * k
    return r, j


def _rule_for(layer, kind, in_shape, out_shape):
    """(spatial output sizes worked by the rule, text) for conv/pool layers, else (None, "")."""
    if kind not in ("conv", "depthwise", "separable", "pool") or len(in_shape) < 2:
        return None, ""
    rank = len(in_shape) - 1
    if kind == "pool":
        f = _tuple(layer.pool_size, rank)
        s = _tuple(layer.strides if layer.strides is not None else layer.pool_size, rank)
        d = (1,) * rank
    else:
        f, s = _tuple(layer.kernel_size, rank), _tuple(layer.strides, rank)
        d = _tuple(layer.dilation_rate, rank)
    outs, texts = [], []
    for a in range(rank):
        o, t = rule(in_shape[a], f[a], s[a], layer.padding, d[a])
        if o is None:
            return None, ""
        outs.append(o)
        texts.append(t)
    if len(set(texts)) == 1:
        return tuple(outs), texts[0]
    axes = "HWD"
    return tuple(outs), "; ".join(f"{axes[a]}: {t}" for a, t in enumerate(texts))


# --------------------------------------------------------------------------------------------- the walk

def _graph(model):
    """The model's calls in a readable topological order: depth-first from the outputs (in order), each
    call after its inputs, a merge's inputs in argument order. Returns [(layer, node)]."""
    from keras.src.ops.function import make_node_key

    in_model = getattr(model, "_nodes", None)

    def node_of(t):
        op, idx, _ = t._keras_history
        return None if op is None else (op, op._inbound_nodes[idx], idx)

    order, seen = [], set()
    for out in model.outputs:
        stack = [(node_of(out), False)]
        while stack:
            item, expanded = stack.pop()
            if item is None:
                continue
            op, node, idx = item
            key = make_node_key(op, idx)
            if key in seen:
                continue
            if in_model is not None and key not in in_model:
                continue
            if expanded:
                seen.add(key)
                order.append((op, node))
                continue
            stack.append((item, True))
            for t in reversed(node.input_tensors):
                parent = node_of(t)
                if parent is not None and make_node_key(parent[0], parent[2]) not in seen:
                    stack.append((parent, False))
    # Inputs that feed nothing still get a row.
    for t in model.inputs:
        item = node_of(t)
        if item and make_node_key(item[0], item[2]) not in seen:
            order.insert(0, (item[0], item[1]))
            seen.add(make_node_key(item[0], item[2]))
    return order


def _sequential_graph(model):
    return [(layer, None) for layer in model.layers]


def layer_rows(model, _prefix="", _tensor_rf=None, _counted=None):
    """One dict per layer call of `model` (nested models expanded, their names prefixed "outer/"):

    name, type, shape (output shape without the batch axis; a list for several outputs), params (counted
    at a layer's first call), trainable, macs, rf ("all", None or the size along H), jump, rule (text),
    rule_out (spatial sizes by the rule, or None), inputs (names of the layers it reads), aux (True when
    it feeds none of the model's first output).
    """
    import keras

    tensor_rf = {} if _tensor_rf is None else _tensor_rf
    counted = set() if _counted is None else _counted
    rows = []
    if isinstance(model, keras.Sequential):
        return _sequential_rows(model, _prefix, counted, (fractions.Fraction(1), fractions.Fraction(1)))[0]
    main = _ancestors(model, model.outputs[:1]) if len(model.outputs) > 1 else None
    for t in model.inputs:
        tensor_rf.setdefault(id(t), (fractions.Fraction(1), fractions.Fraction(1)) if len(_shape(t)) >= 1 else None)
    for layer, node in _graph(model):
        kind = _kind(layer)
        ins, outs = list(node.input_tensors), list(node.output_tensors)
        in_shapes, out_shapes = [_shape(t) for t in ins], [_shape(t) for t in outs]
        in_rf = _merge_rf([tensor_rf.get(id(t)) for t in ins]) if ins else None
        if kind == "input":
            rf = tensor_rf.get(id(outs[0]), (fractions.Fraction(1), fractions.Fraction(1)))
            rows.append(_row(_prefix + layer.name, "InputLayer", out_shapes, 0, 0, 0, rf, None, "", [], False))
            continue
        aux = main is not None and id(node) not in main
        if kind == "model" and isinstance(layer, keras.Sequential):
            sub, out_rf = _sequential_rows(layer, f"{_prefix}{layer.name}/", counted, in_rf)
            for r in sub:
                r["aux"] = r["aux"] or aux
            rows.extend(sub)
            for dst in outs:
                tensor_rf[id(dst)] = out_rf
            continue
        if kind == "model":
            inner_rf = {}
            for src, dst in zip(ins, layer.inputs):
                inner_rf[id(dst)] = tensor_rf.get(id(src))
            sub = layer_rows(layer, f"{_prefix}{layer.name}/", inner_rf, counted)
            for r in sub:
                r["aux"] = r["aux"] or aux
            rows.extend(sub)
            for src, dst in zip(layer.outputs, outs):
                tensor_rf[id(dst)] = inner_rf.get(id(src))
            continue
        first = id(layer) not in counted
        counted.add(id(layer))
        params, trainable = _weights(layer) if first else (0, 0)
        macs = _macs(layer, kind, in_shapes, out_shapes)
        rf = _rf(layer, kind, in_rf, in_shapes, out_shapes)
        for t in outs:
            tensor_rf[id(t)] = rf
        rule_out, text = _rule_for(layer, kind, in_shapes[0], out_shapes[0]) if ins else (None, "")
        parents = [_prefix + t._keras_history.operation.name for t in ins
                   if t._keras_history.operation is not None]
        rows.append(_row(_prefix + layer.name, type(layer).__name__, out_shapes, params, trainable, macs, rf,
                         rule_out, text, parents, aux))
    return rows


def _ancestors(model, outputs):
    """ids of the nodes the given outputs depend on."""
    found, stack = set(), list(outputs)
    while stack:
        t = stack.pop()
        op, idx, _ = t._keras_history
        if op is None:
            continue
        node = op._inbound_nodes[idx]
        if id(node) in found:
            continue
        found.add(id(node))
        stack.extend(node.input_tensors)
    return found


def _sequential_rows(model, prefix, counted, rf):
    """A Sequential model: its layers in order, each reading the previous output. Returns (rows, last RF)."""
    shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else None
    if shape is None:
        raise UserError(f"{model.name}: a Sequential model needs an Input to be shown")
    rows = [_row(prefix + "input", "InputLayer", [shape[1:]], 0, 0, 0, rf, None, "", [], False)]
    prev = prefix + "input"
    for layer in model.layers:
        kind = _kind(layer)
        out = tuple(layer.compute_output_shape(shape))
        in_s, out_s = [shape[1:]], [out[1:]]
        first = id(layer) not in counted
        counted.add(id(layer))
        params, trainable = _weights(layer) if first else (0, 0)
        rf = _rf(layer, kind, rf, in_s, out_s)
        rule_out, text = _rule_for(layer, kind, in_s[0], out_s[0])
        rows.append(_row(prefix + layer.name, type(layer).__name__, out_s, params, trainable,
                         _macs(layer, kind, in_s, out_s), rf, rule_out, text, [prev], False))
        prev, shape = prefix + layer.name, out
    return rows, rf


def _row(name, typ, out_shapes, params, trainable, macs, rf, rule_out, text, inputs, aux):
    if rf is None:
        size, jump = None, None
    elif rf == ALL:
        size, jump = ALL, None
    else:
        size, jump = rf
        size = int(size) if size.denominator == 1 else float(size)
        jump = int(jump) if jump.denominator == 1 else float(jump)
    return dict(name=name, type=typ, shape=out_shapes[0] if len(out_shapes) == 1 else out_shapes,
                params=int(params), trainable=int(trainable), macs=int(macs), rf=size, jump=jump,
                rule=text, rule_out=rule_out, inputs=inputs, aux=bool(aux))


def totals(rows, model=None):
    """Sums over the rows: params, trainable, non_trainable, macs; and the same for the main output only."""
    t = dict(params=sum(r["params"] for r in rows), trainable=sum(r["trainable"] for r in rows),
             macs=sum(r["macs"] for r in rows))
    t["non_trainable"] = t["params"] - t["trainable"]
    main = [r for r in rows if not r["aux"]]
    t["main_params"] = sum(r["params"] for r in main)
    t["main_macs"] = sum(r["macs"] for r in main)
    t["has_aux"] = len(main) != len(rows)
    return t


KINDS = ("convolution", "fully connected", "recurrent", "normalisation", "other")


def kind_of(type_name):
    """A layer type's kind, for where the parameters are (the notes: AlexNet's and VGG's FC layers hold most)."""
    if "Conv" in type_name:
        return "convolution"
    if type_name == "Dense":
        return "fully connected"
    if type_name in ("SimpleRNN", "LSTM", "GRU", "RNN", "Bidirectional"):
        return "recurrent"
    return "normalisation" if "Normalization" in type_name else "other"


def params_by_kind(rows):
    """{kind: params} in KINDS order, kinds holding parameters only; the values sum to totals(rows)["params"]."""
    out = dict.fromkeys(KINDS, 0)
    for r in rows:
        out[kind_of(r["type"])] += r["params"]
    return {k: v for k, v in out.items() if v}


# ------------------------------------------------------------------------------------------ rendering

def fmt_shape(shape):
    if isinstance(shape, list):
        return ", ".join(fmt_shape(s) for s in shape)
    if not shape:
        return "scalar"
    return "×".join("?" if d is None else str(d) for d in shape)


def fmt_count(n):
    """1,234,567 (1.23 M)."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n:,} ({_short(n)})"
    return f"{n:,}"


def _short(n):
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return str(n)


def _jump_text(j):
    return "" if j is None else (str(j) if isinstance(j, int) else f"{j:g}")


def render(rows, title="", note=""):
    """The table as text: one line per layer call, then the totals."""
    body = []
    for r in rows:
        rf = "" if r["rf"] is None else (r["rf"] if r["rf"] == ALL else f"{r['rf']:g}")
        body.append((("*" if r["aux"] else "") + r["name"], r["type"], fmt_shape(r["shape"]),
                     f"{r['params']:,}", f"{r['macs']:,}", str(rf), _jump_text(r["jump"]), r["rule"]))
    header = HEADER
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    right = {3, 4, 5, 6}

    def line(cells):
        out = []
        for i, (c, w) in enumerate(zip(cells, widths)):
            out.append(c.rjust(w) if i in right else c.ljust(w))
        return "  ".join(out).rstrip()

    lines = []
    if title:
        lines.append(title)
    lines.append("MACs = multiply-accumulates per example (1 MAC = 2 FLOPs; conv, dense, recurrent, norm layers). "
                 "RF = receptive field along H in input pixels, jump = product of strides.")
    lines.append(line(header))
    lines.append(line(["-" * w for w in widths]))
    lines.extend(line(b) for b in body)
    lines.append(line(["-" * w for w in widths]))
    t = totals(rows)
    lines.append(f"Total params: {fmt_count(t['params'])}  (trainable {t['trainable']:,}, "
                 f"non-trainable {t['non_trainable']:,})")
    lines.append(f"Total MACs:   {fmt_count(t['macs'])} per example  (= {_short(2 * t['macs'])} FLOPs)")
    if t["main_params"]:  # for the network that classifies (GoogLeNet: without its aux heads)
        main = [r for r in rows if not r["aux"]]
        lines.append(f"Params by kind{' (main output)' if t['has_aux'] else ''}: " + " · ".join(
            f"{k} {_short(n)} ({100 * n / t['main_params']:.1f} %)" for k, n in params_by_kind(main).items()))
    if t["has_aux"]:
        lines.append(f"* feeds only auxiliary outputs (used in training). Main output only (inference model): "
                     f"params {fmt_count(t['main_params'])}, MACs {fmt_count(t['main_macs'])}")
    if note:
        lines.append(note)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- config as TOML

def _toml_value(v):
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v), ensure_ascii=False)


def config_text(cfg):
    """The resolved config as TOML (it reads back with tomllib), with allowed values as comments."""
    from . import config

    lines = [f"# resolved configuration of {cfg['experiment']['name']} (network {cfg['model']['name']}); "
             f"set any key with --set section.key=value"]
    for sec, table in cfg.items():
        lines.append("")
        lines.append(f"[{sec}]")
        width = max((len(k) for k in table), default=0)
        for k, v in table.items():
            key = f"{sec}.{k}"
            hint = []
            if key in config.CHOICES:
                hint.append("|".join(_toml_value(c) if not isinstance(c, str) else c for c in config.CHOICES[key]))
            if key in config.RANGES:
                lo, hi, lo_inc, hi_inc = config.RANGES[key]
                parts = []
                if lo is not None:
                    parts.append(f"{'≥' if lo_inc else '>'} {lo}")
                if hi is not None:
                    parts.append(f"{'≤' if hi_inc else '<'} {hi}")
                hint.append(", ".join(parts))
            text = f"{k.ljust(width)} = {_toml_value(v)}"
            lines.append(f"{text}  # {'; '.join(hint)}" if hint else text)
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- input resolution

# Known data sets' image shapes and class counts, so an experiment is shown at its data's size without
# loading the data.
DATA_SHAPES = {"digits": ((8, 8, 1), 10), "mnist": ((28, 28, 1), 10), "fashion_mnist": ((28, 28, 1), 10),
               "cifar10": ((32, 32, 3), 10), "cifar100": ((32, 32, 3), 100)}


def parse_input(text):
    """'32,32,3' (or 32x32x3) → (32, 32, 3); 1 to 3 positive integers (tokens (T,), sequences (T, F))."""
    parts = [p for p in text.replace("×", ",").replace("x", ",").split(",") if p.strip()]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not 1 <= len(shape) <= 3 or any(d <= 0 for d in shape):
        raise UserError(f"--input {text!r} must be H,W,C (e.g. 32,32,3), or T,F / T for sequence models")
    return shape


def _uses_data(target, overrides):
    """True for an experiment (it trains on its [data], digits by default) or a --set data.name."""
    from . import config

    if any(o.split("=", 1)[0].strip() == "data.name" for o in overrides):
        return True
    return config.find_experiment(target) is not None


def _data_shape(name):
    """(image shape, classes) of data set `name`: known sets without loading, others loaded; None if unreadable."""
    if name in DATA_SHAPES:
        return DATA_SHAPES[name]
    from . import data as data_mod

    try:
        d = data_mod.load(name)
    except UserError:
        return None
    return d.shape, d.num_classes


def input_for(cfg, target, overrides, input_shape=None, classes=None):
    """(input shape, number of classes, where they come from) for showing `cfg`'s network.

    Input: --input; else, for an experiment (or with --set data.name), its data set's size — what `run` would
    train on; else the network's registered (paper) input. data.image_size / data.channels apply on top.
    Classes: --classes, else the data set's (same rule), else the builder's default.
    """
    import inspect

    from . import registry

    entry = registry.get(cfg["model"]["name"])
    d = cfg["data"]
    need = not input_shape or not classes
    data = _data_shape(d["name"]) if need and _uses_data(target, overrides) else None
    origin = []
    if input_shape:
        shape = tuple(input_shape)
        origin.append("--input")
    else:
        if data:
            shape, origin = tuple(data[0]), [f"data {d['name']}"]
        else:
            shape, origin = entry.input_shape, ["the network's paper input"]
        if len(shape) == 3 and (d["image_size"] or d["channels"]):
            h, w = d["image_size"] or shape[:2]
            shape = (h, w, d["channels"] or shape[2])
            origin.append("data.image_size/channels")
        if tuple(shape) != tuple(entry.input_shape):
            paper = ",".join(map(str, entry.input_shape))
            origin.append(f"paper input: --input {paper}")
    if classes:
        n = classes
    elif data:
        n = data[1]
    else:
        p = inspect.signature(entry.fn).parameters.get("num_classes")
        n = p.default if p is not None and isinstance(p.default, int) else 1000
    return tuple(shape), int(n), "; ".join(origin)


def build(cfg, shape, num_classes):
    from . import registry
    from .nets.blocks import KnobError

    m = cfg["model"]
    kw = {k: v for k, v in m.items() if k != "name"}
    try:
        return registry.build(m["name"], shape, num_classes, **kw)
    except KnobError as e:  # wrong whatever the input: no advice about its size
        raise UserError(f"cannot build {m['name']}: {one_line(e, 300, kind=False)}") from None
    except ValueError as e:
        raise UserError(f"{m['name']} cannot take a {fmt_shape(shape)} input with these settings: "
                        f"{one_line(e, 300, kind=False)}; try another --input, padding='same' or a small-image stem"
                        ) from None


def show(target, overrides=(), input_shape=None, classes=None, echo=print):
    """Resolve, build and print the table for `target` (network or experiment). Returns the rows."""
    from . import config

    cfg = config.resolve(target, overrides)
    shape, n, origin = input_for(cfg, target, overrides, input_shape, classes)
    model = build(cfg, shape, n)
    rows = layer_rows(model)
    changed = {k: v for k, v in cfg["model"].items()
               if k != "name" and v != _registry_default(cfg["model"]["name"], k)}
    knobs = ", ".join(f"{k}={_toml_value(v)}" for k, v in changed.items())
    path = config.find_experiment(target)
    if path is not None:
        try:
            path = path.resolve().relative_to(pathlib.Path.cwd())
        except ValueError:
            pass
    what = f"experiment {path} → network {cfg['model']['name']}" if path else f"network {cfg['model']['name']}"
    title = f"{what}: input {fmt_shape(shape)} ({origin}), {n} classes" + (f"; {knobs}" if knobs else "")
    echo(render(rows, title))
    return rows


def _registry_default(name, key):
    from . import registry

    return registry.get(name).defaults().get(key)
