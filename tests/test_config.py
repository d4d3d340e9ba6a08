import json

import pytest

from suite import config, runner
from suite.errors import UserError


def test_precedence_network_experiment_flags(tmp_path):
    exp = tmp_path / "e.toml"
    exp.write_text('[model]\nname = "alexnet"\ndropout = 0.3\n[train]\nlr = 0.5\nepochs = 7\n')
    cfg = config.resolve(str(exp), ["train.lr=0.05"], {"train.epochs": 3})
    assert cfg["model"]["dropout"] == 0.3  # experiment over network default (0.5)
    assert cfg["model"]["padding"] == "same"  # network default
    assert cfg["train"]["lr"] == 0.05  # --set over experiment
    assert cfg["train"]["epochs"] == 3  # flag over experiment
    assert cfg["experiment"]["name"] == "e"


def test_bare_network_name():
    cfg = config.resolve("lenet5_modern")
    assert cfg["model"]["name"] == "lenet5_modern" and cfg["model"]["activation"] == "relu"


@pytest.mark.parametrize("override, match", [
    ("model.dropou=0.1", "unknown setting model.dropou.*did you mean dropout"),
    ("train.lr=abc", "train.lr.*expected a number"),
    ("train.epochs=1.5", "train.epochs.*expected an integer"),
    ("train.shuffle=true", "unknown setting train.shuffle.*"),
    ("data.shuffle=1", "data.shuffle.*expected true or false"),
    ("model.padding=full", "model.padding.*not one of"),
    ("train.optimizer=sgdd", "train.optimizer.*not one of"),
    ("nosection=1", "must be section.key"),
    ("foo.bar=1", "unknown section"),
    ("train.lr", "needs the form section.key=value"),
    ("log.backup_every=soon", "log.backup_every.*not a time, a step count"),
    ('log.backup_every="1.5 steps"', "log.backup_every.*not a time, a step count"),
    ('log.backup_every="-2min"', "log.backup_every.*not a time, a step count"),
])
def test_bad_overrides(override, match):
    with pytest.raises(UserError, match=match):
        config.resolve("lenet5", [override])


def test_values_parse_as_toml():
    cfg = config.resolve("lenet5", ["data.image_size=[32, 32]", "train.nesterov=true", "model.padding=same"])
    assert cfg["data"]["image_size"] == [32, 32] and cfg["train"]["nesterov"] is True
    assert cfg["model"]["padding"] == "same"


def test_every_experiment_file_resolves():
    for name in config.list_experiments():
        cfg = config.resolve(name)
        assert cfg["experiment"]["name"] == name


def test_step_schedule_needs_milestones():
    with pytest.raises(UserError, match="milestones"):
        config.resolve("lenet5", ["train.schedule=step"])


def test_cosine_warmup_rises_then_decays():
    from suite import optim

    t = config.resolve("lenet5", ["train.schedule=cosine", "train.warmup_epochs=2", "train.epochs=10",
                                  "train.lr=0.1"])["train"]
    lr = optim.schedule(t, steps_per_epoch=10)
    at = lambda step: float(lr(step))  # noqa: E731
    assert at(0) == pytest.approx(0.0, abs=1e-9) and at(10) == pytest.approx(0.05)
    assert at(20) == pytest.approx(0.1) and at(60) == pytest.approx(0.05, rel=1e-3)  # cosine halfway
    assert at(100) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(UserError, match="'cosine', 'linear' or 'step' only"):
        config.resolve("lenet5", ["train.schedule=constant", "train.warmup_epochs=1"])
    with pytest.raises(UserError, match="leaves nothing"):
        config.resolve("lenet5", ["train.schedule=cosine", "train.warmup_epochs=20", "train.epochs=20"])


def test_linear_schedule_is_pages_triangle_and_saves():
    """train.schedule = linear: up from min_lr to lr over warmup_epochs, straight down to min_lr at the end (Page
    2018's [0, 5, 24] → [0, 0.4, 0]); it travels in a saved optimizer (resume)."""
    import keras

    from suite import optim

    t = config.resolve("lenet5", ["train.schedule=linear", "train.warmup_epochs=5", "train.epochs=24",
                                  "train.lr=0.4"])["train"]
    lr = optim.schedule(t, steps_per_epoch=10)
    at = lambda step: float(lr(step))  # noqa: E731
    assert at(0) == pytest.approx(0.0, abs=1e-9) and at(25) == pytest.approx(0.2)
    assert at(50) == pytest.approx(0.4) and at(145) == pytest.approx(0.2) and at(240) == pytest.approx(0.0, abs=1e-7)
    assert at(1000) == pytest.approx(0.0, abs=1e-7)  # past the end: stays at the floor
    plain = optim.schedule({**t, "warmup_epochs": 0.0, "min_lr": 0.01}, steps_per_epoch=10)  # no warm-up: a line
    ref = keras.optimizers.schedules.PolynomialDecay(0.4, 240, 0.01, power=1.0)
    for step in (0, 7, 120, 239, 240):
        assert float(plain(step)) == pytest.approx(float(ref(step)), rel=1e-5)
    opt = keras.optimizers.SGD(lr, momentum=0.9)
    again = keras.optimizers.SGD.from_config(json.loads(json.dumps(opt.get_config())))
    assert float(again.learning_rate) == pytest.approx(0.0, abs=1e-9)  # step 0, through the schedule
    assert [float(again._learning_rate(s)) for s in (25, 145)] == pytest.approx([0.2, 0.2])
    assert config.resolve("cifar10_speedrun")["train"]["schedule"] == "linear"


def test_step_schedule_with_warmup_rises_then_steps_and_saves():
    """ResNet-110's start (He et al. 2016 §4.2 warm up at a low lr): a linear rise, then the milestones."""
    import keras

    from suite import optim

    t = config.resolve("lenet5", ["train.schedule=step", "train.milestones=[4, 6]", "train.warmup_epochs=1",
                                  "train.epochs=8", "train.lr=0.1"])["train"]
    lr = optim.schedule(t, steps_per_epoch=10)
    at = lambda step: float(lr(step))  # noqa: E731
    assert [at(s) for s in (0, 5, 10, 40, 41, 61, 79)] == pytest.approx([0, 0.05, 0.1, 0.1, 0.01, 0.001, 0.001])
    opt = keras.optimizers.SGD(lr, momentum=0.9)
    again = keras.optimizers.SGD.from_config(json.loads(json.dumps(opt.get_config())))
    assert [float(again._learning_rate(s)) for s in (5, 45)] == pytest.approx([0.05, 0.01])
    plain = optim.schedule({**t, "warmup_epochs": 0.0}, steps_per_epoch=10)
    assert isinstance(plain, keras.optimizers.schedules.PiecewiseConstantDecay)  # no warm-up: Keras' own
    assert config.resolve("resnet110")["train"]["warmup_epochs"] == 1


def test_plateau_monitor_needs_a_validation_set_for_val_figures():
    assert config.resolve("nin")["train"]["plateau_monitor"] == "accuracy"  # Lin et al.: the training accuracy
    no_val = config.resolve("lenet5", ["train.plateau_monitor=loss", "data.val_split=0"])  # no error: loss exists
    assert no_val["train"]["plateau_monitor"] == "loss"
    with pytest.raises(UserError, match="needs a validation set"):
        config.resolve("lenet5", ["train.plateau_monitor=val_accuracy", "data.val_split=0"])


@pytest.mark.parametrize("value, parsed", [
    ("epoch", None), ("2min", ("seconds", 120.0)), ("90s", ("seconds", 90.0)), ("1h", ("seconds", 3600.0)),
    ("500 steps", ("steps", 500)), ("1 step", ("steps", 1)), ("0", None),
])
def test_backup_every_forms(value, parsed):
    assert config.parse_every(value) == parsed
    cfg = config.resolve("lenet5", [f"log.backup_every={value!r}"])
    assert cfg["log"]["backup_every"] == value
    assert runner.config_hash(cfg) == runner.config_hash(config.resolve("lenet5"))  # how often: not which run


def test_settings_added_later_keep_an_older_runs_identity_at_their_defaults():
    """A run begun before data.cutout, data.crop_fill, train.plateau_monitor and data.whiten existed resumes after an
    upgrade."""
    import copy

    cfg = config.resolve("resnet20")
    old = copy.deepcopy(cfg)
    for key in runner.SINCE_HASHED:
        sec, k = key.split(".")
        del old[sec][k]
    assert runner.config_hash(old) == runner.config_hash(cfg)
    assert runner.config_hash(config.resolve("resnet20", ["data.cutout=8"])) != runner.config_hash(cfg)
    assert runner.config_hash(config.resolve("resnet20", ["data.whiten=zca"])) != runner.config_hash(cfg)


def test_one_line_collapses_an_exception_and_cuts_it():
    from suite.errors import one_line

    e = OSError("line one\n   line two\ttabbed")
    assert one_line(e) == "OSError: line one line two tabbed"
    assert one_line(e, kind=False) == "line one line two tabbed"
    assert one_line(e, 12) == "OSError: lin" and one_line(e, None, kind=False).endswith("tabbed")
