"""`python -m suite show`: the rule's numbers by hand, and the command itself.

That the table agrees with the built model for every registered network is checked in tests/test_networks.py
(`check_show_table`), on the one build each network gets there. Hand-worked numbers come from the notes (LeNet-5 32→28→14→10→5→1, AlexNet 227→55)
and from the well-known receptive fields of AlexNet (195) and VGG-16 (212; Araujo et al. 2019, Distill,
"Computing receptive fields of convolutional neural networks", Table 1).
"""

import io
import tomllib
from contextlib import redirect_stdout

import keras
import pytest

from suite import cli, config, registry, show
from suite.errors import UserError

SMALL = (32, 32, 3)


# ---------------------------------------------------------------------------------- hand-worked cases

def _by_name(rows):
    return {r["name"]: r for r in rows}


def test_lenet5_by_hand():
    rows = _by_name(show.layer_rows(registry.build("lenet5", (32, 32, 1), 10)))
    assert rows["c1_conv"]["rule"] == "(32−5+2·0)/1+1 = 28"
    assert rows["c1_conv"]["shape"] == (28, 28, 6)
    assert rows["s2"]["rule"] == "(28−2+2·0)/2+1 = 14"
    assert rows["c3_conv"]["rule"] == "(14−5+2·0)/1+1 = 10" and rows["c3_conv"]["shape"] == (10, 10, 16)
    assert rows["s4"]["rule"] == "(10−2+2·0)/2+1 = 5"
    assert rows["c5_conv"]["rule"] == "(5−5+2·0)/1+1 = 1" and rows["c5_conv"]["shape"] == (1, 1, 120)
    # C1: 28·28 outputs × 6 maps × 5·5 weights = 117,600 MACs; 6·(25+1) = 156 parameters
    assert rows["c1_conv"]["macs"] == 28 * 28 * 6 * 5 * 5 == 117_600
    assert rows["c1_conv"]["params"] == 156
    # C3 (full connectivity here): 10·10·16·(5·5·6) = 240,000
    assert rows["c3_conv"]["macs"] == 240_000
    # receptive fields: 5, 6, 14, 16, 32 with jumps 1, 2, 2, 4, 4
    assert [(rows[n]["rf"], rows[n]["jump"]) for n in ("c1_conv", "s2", "c3_conv", "s4", "c5_conv")] == [
        (5, 1), (6, 2), (14, 2), (16, 4), (32, 4)]
    assert rows["flatten"]["rf"] == "all"


def test_alexnet_227_by_hand():
    rows = _by_name(show.layer_rows(registry.build("alexnet", (227, 227, 3), 10, width=0.0625, fc_units=64)))
    assert rows["conv1_conv"]["rule"] == "(227−11+2·0)/4+1 = 55"
    assert rows["pool1"]["rule"] == "(55−3+2·0)/2+1 = 27"
    assert rows["pool2"]["rule_out"] == (13, 13) and rows["pool5"]["rule_out"] == (6, 6)
    assert (rows["conv1_conv"]["rf"], rows["conv1_conv"]["jump"]) == (11, 4)
    assert (rows["pool5"]["rf"], rows["pool5"]["jump"]) == (195, 32)


def test_vgg16_receptive_field_and_macs():
    # VGG-16's pool5 sees 212 input pixels whatever the input size (Araujo et al. 2019, Table 1).
    rows = _by_name(show.layer_rows(registry.build("vgg16", SMALL, 10, width=0.125, fc_units=16)))
    assert (rows["block5_pool"]["rf"], rows["block5_pool"]["jump"]) == (212, 32)
    assert rows["block1_conv2_conv"]["rf"] == 5 and rows["block3_conv3_conv"]["rf"] == 40
    # SAME 3×3 at stride 1: P = 1 → (32−3+2·1)/1+1 = 32
    assert rows["block1_conv1_conv"]["rule"] == "(32−3+2·1)/1+1 = 32 (SAME)"
    # MACs by hand: 32·32 positions × 8 filters × 3·3·3 weights
    assert rows["block1_conv1_conv"]["macs"] == 32 * 32 * 8 * 27


def test_same_padding_odd_total_and_dilation():
    # stride 2, SAME, 32 → 16: total pad (16−1)·2+3−32 = 1 → P shown as 0.5, the extra pixel at the bottom
    out, text = show.rule(32, 3, 2, "same")
    assert out == 16 and text == "(32−3+2·0.5)/2+1 = 16 (SAME, pad 0+1)"
    # 1×1 stride 2 SAME: TF pads nothing; ⌊(32−1)/2⌋+1 = 16 = ⌈32/2⌉
    assert show.rule(32, 1, 2, "same") == (16, "⌊(32−1+2·0)/2⌋+1 = 16 (SAME)")
    # dilation 2 turns a 3×3 kernel into an effective 5×5: F = 2·(3−1)+1 = 5
    assert show.rule(32, 3, 1, "valid", d=2) == (28, "(32−5+2·0)/1+1 = 28 (F=2·(3−1)+1=5)")
    assert show.rule(16, 3, 1, "same", d=6)[1] == "(16−13+2·6)/1+1 = 16 (SAME; F=6·(3−1)+1=13)"
    for n in range(1, 40):
        for f in (1, 2, 3, 5, 7, 11):
            for s in (1, 2, 3, 4):
                assert show.rule(n, f, s, "same")[0] == -(-n // s)
                if n >= f:
                    assert show.rule(n, f, s, "valid")[0] == (n - f) // s + 1


def test_dilated_network_effective_kernel():
    rows = _by_name(show.layer_rows(registry.build("dilated_gridding", SMALL, 10, width=0.25)))
    r = rows["dil1_r2_conv"]
    assert r["rule"] == "(16−5+2·2)/1+1 = 16 (SAME; F=2·(3−1)+1=5)"
    # stem: 3×3 (RF 3) then 3×3/2 (RF 5, jump 2); dilation 2 adds (5−1)·2 = 8
    assert (rows["stem2_conv"]["rf"], rows["stem2_conv"]["jump"]) == (5, 2)
    assert (r["rf"], r["jump"]) == (13, 2)


def test_grouped_conv_macs_divided_by_groups():
    inp = keras.Input((8, 8, 16))
    x = keras.layers.Conv2D(32, 3, padding="same", groups=4, name="g")(inp)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = keras.layers.SeparableConv2D(8, 3, name="sep")(x)
    rows = _by_name(show.layer_rows(keras.Model(inp, x)))
    assert rows["g"]["macs"] == 8 * 8 * 32 * 3 * 3 * (16 // 4)
    assert rows["dw"]["macs"] == 6 * 6 * 64 * 3 * 3
    assert rows["sep"]["macs"] == 4 * 4 * 64 * 3 * 3 + 4 * 4 * 64 * 8
    assert rows["dw"]["rule"] == "(8−3+2·0)/1+1 = 6"


def test_recurrent_macs_per_step_times_steps():
    rows = _by_name(show.layer_rows(registry.build("lstm", (28, 28, 1), 10)))
    assert rows["lstm1"]["macs"] == 28 * 4 * 128 * (28 + 128)
    rows = _by_name(show.layer_rows(registry.build("gru", (28, 28, 1), 10, bidirectional=True, units=16)))
    assert rows["bigru1"]["macs"] == 2 * 28 * 3 * 16 * (28 + 16)
    rows = _by_name(show.layer_rows(registry.build("rnn", (5,), 4, embedding=3, units=8, sequence_output=True)))
    assert rows["simple1"]["macs"] == 5 * 8 * (3 + 8) and rows["embedding"]["macs"] == 0


def test_nested_and_sequential_models():
    inner = keras.Sequential([keras.Input((16, 16, 4)), keras.layers.Conv2D(8, 3, name="c"),
                              keras.layers.BatchNormalization(name="bn")], name="inner")
    inp = keras.Input((16, 16, 4), name="x")
    y = inner(inp)
    y = keras.layers.Conv2D(8, 3, strides=2, name="after")(y)
    model = keras.Model(inp, keras.layers.GlobalAveragePooling2D(name="gap")(y))
    rows = _by_name(show.layer_rows(model))
    assert rows["inner/c"]["shape"] == (14, 14, 8) and rows["inner/c"]["rf"] == 3
    assert rows["inner/bn"]["macs"] == 14 * 14 * 8 and rows["inner/bn"]["trainable"] == 16
    assert (rows["after"]["rf"], rows["after"]["jump"], rows["after"]["rule_out"]) == (5, 2, (6, 6))
    assert show.totals(list(rows.values()))["params"] == model.count_params()


def test_googlenet_aux_heads_marked_and_inference_totals():
    from suite.nets import googlenet

    model = registry.build("googlenet", SMALL, 10, width=0.125)
    rows = show.layer_rows(model)
    t = show.totals(rows)
    assert t["has_aux"] and {r["name"] for r in rows if r["aux"]} >= {"aux1_predictions", "aux2_fc_dense"}
    assert t["main_params"] == googlenet.inference_model(model).count_params()
    assert "Main output only" in show.render(rows)


# ------------------------------------------------------------------------------- config and the CLI

def _cli(*argv):
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = cli.main(list(argv))
    return code, buf.getvalue()


def test_config_text_reads_back_as_toml():
    cfg = config.resolve("resnet20", ["model.width=0.5", "train.milestones=[2, 4]"])
    parsed = tomllib.loads(show.config_text(cfg))
    assert parsed == cfg
    code, out = _cli("show", "nin", "--config")
    assert code == 0 and "[model]" in out and "maps" in out
    assert tomllib.loads(out)["model"]["pools"] == ["max", "avg"]


def test_cli_table_and_errors(capsys):
    code, out = _cli("show", "lenet5", "--input", "32,32,1", "--classes", "10")
    assert code == 0 and "(32−5+2·0)/1+1 = 28" in out and "Total params: 61,706" in out
    code, out = _cli("show", "exercise2_cnn", "--input", "8,8,1")
    assert code == 2 and "cannot take" in capsys.readouterr().err
    code, _ = _cli("show", "rnn", "--set", "model.read=columns")  # a knob's value: no advice about the input
    err = capsys.readouterr().err
    assert code == 2 and "cannot build rnn: read must be one of rows, pixels" in err and "--input" not in err
    assert _cli("show", "lenet5", "--input", "a,b")[0] == 2
    assert _cli("show", "lenet5", "--set", "model.nope=1")[0] == 2
    assert "--config" in capsys.readouterr().err


def test_input_comes_from_the_data_set_of_an_experiment(tmp_path):
    # A bare network (no experiment file of that name): its paper input and the builder's classes …
    name = next(n for n in registry.list_models() if config.find_experiment(n) is None)
    entry = registry.get(name)
    cfg = config.resolve(name)
    assert show.input_for(cfg, name, [])[0] == entry.input_shape
    # … unless a data set is named: then what `run` would train on.
    cfg = config.resolve(name, ["data.name=cifar100"])
    assert show.input_for(cfg, name, ["data.name=cifar100"])[:2] == ((32, 32, 3), 100)
    # An experiment trains on its [data] (digits 8×8×1 when it names none).
    exp = tmp_path / "x.toml"
    exp.write_text('[model]\nname = "alexnet"\n')
    assert show.input_for(config.resolve(str(exp)), str(exp), [])[:2] == ((8, 8, 1), 10)
    exp.write_text('[model]\nname = "alexnet"\n[data]\nname = "cifar100"\nimage_size = [40, 40]\n')
    assert show.input_for(config.resolve(str(exp)), str(exp), [])[:2] == ((40, 40, 3), 100)
    # --input and --classes win.
    assert show.input_for(config.resolve(str(exp)), str(exp), [], (64, 64, 3), 5)[:2] == ((64, 64, 3), 5)
    with pytest.raises(UserError):
        show.parse_input("0,3")
    assert show.parse_input("28x28x1") == (28, 28, 1) and show.parse_input("5") == (5,)


def test_vgg16_224_macs_match_the_published_figure():
    # 15.47 G multiply-adds for VGG-16 at 224×224 (conv + FC, no biases): torchvision's weight table lists
    # "GFLOPS 15.47" for vgg16, counted as multiply-adds. Zero init only skips the slow random init.
    rows = show.layer_rows(registry.build("vgg16", (224, 224, 3), 1000, initializer="zeros"))
    t = show.totals(rows)
    assert t["macs"] == 15_470_264_320 and t["params"] == 138_357_544


def test_other_layer_kinds_do_not_break_the_table():
    inp = keras.Input((16, 4), name="seq")
    x = keras.layers.Conv1D(8, 3, padding="causal", name="causal")(inp)
    x = keras.layers.LayerNormalization(name="ln")(x)
    x = keras.layers.Conv1D(8, 3, strides=2, padding="valid", name="c1d")(x)
    img = keras.Input((8, 8, 2), name="img")
    y = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="up_conv")(img)
    y = keras.layers.UpSampling2D(2, name="up")(y)
    y = keras.layers.Cropping2D(1, name="crop")(y)
    y = keras.layers.GlobalMaxPooling2D(name="gmp")(y)
    z = keras.layers.Concatenate(name="cat")([keras.layers.Flatten(name="flat")(x), y])
    model = keras.Model([inp, img], keras.layers.Dense(3, name="out")(z))
    rows = _by_name(show.layer_rows(model))
    assert rows["causal"]["rule"] == "" and rows["c1d"]["rule"] == "⌊(16−3+2·0)/2⌋+1 = 7"
    assert rows["ln"]["macs"] == 16 * 8 and rows["up_conv"]["macs"] == 8 * 8 * 2 * 9 * 4
    assert rows["up_conv"]["shape"] == (16, 16, 4) and rows["up"]["jump"] == 0.25
    assert rows["cat"]["rf"] == "all" and rows["out"]["macs"] == rows["cat"]["shape"][0] * 3
    assert show.totals(list(rows.values()))["params"] == model.count_params()
    show.render(list(rows.values()))
