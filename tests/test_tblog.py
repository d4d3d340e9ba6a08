"""What every run logs for TensorBoard beyond Keras' scalars: the augmented-image grid, the confusion matrix,
per-class accuracy, the op graph and the run's settings as HParams (suite.tblog + callbacks.RunSummaries)."""

import io
import json
import pathlib

import numpy as np
import pytest

from suite import tblog


def tiny_run(logdir, *sets, net="lenet5"):
    """A real (tiny) run of a network on the embedded digits data, in this process; returns its directory."""
    from suite import config, runner

    cfg = config.resolve(net, ["train.verbose=0", "data.limit=256", "data.crop=2", *sets],
                         {"log.dir": str(logdir), "train.epochs": 1})
    return pathlib.Path(runner.run(cfg, echo=lambda *a: None)["run_dir"])


def _load(path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    return acc


def _png(event):
    from PIL import Image

    w, h, png = event.tensor_proto.string_val[:3]
    img = Image.open(io.BytesIO(png))
    assert img.size == (int(w), int(h))
    return np.asarray(img.convert("RGB"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("logs"))


def test_image_grid_tiles_and_enlarges():
    x = np.random.default_rng(0).random((10, 8, 8, 1)).astype(np.float32)
    g = tblog.image_grid(x, cols=4, pad=2, min_tile=64)
    # 8×8 images enlarged 8× to 64 px, 4 columns × 3 rows, 2 px gaps
    assert g.shape == (3 * 66 + 2, 4 * 66 + 2, 3)
    assert np.allclose(g[2:66, 2:66, 0], np.kron(x[0, :, :, 0], np.ones((8, 8))))
    assert np.all(g[-60:, -60:] == 0.5)  # the empty 12th tile stays background


def test_denormalise_inverts_the_pipeline():
    mean, std = np.array([0.2, 0.4, 0.6], np.float32), np.array([0.1, 0.2, 0.3], np.float32)
    img = np.random.default_rng(1).random((2, 4, 4, 3)).astype(np.float32)
    assert np.allclose(tblog.denormalise((img - mean) / std, mean, std), img, atol=1e-6)


def test_confusion_matrix_and_per_class_accuracy():
    cm = tblog.confusion_matrix([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    acc = tblog.per_class_accuracy(cm)
    assert acc[:3].tolist() == [0.5, 1.0, 0.0] and np.isnan(acc[3])
    table = tblog.per_class_markdown(cm, ["a", "b", "c", "d"])
    assert "| a | 50.00% | 1 | 2 |" in table and "| d | – | 0 | 0 |" in table


def test_run_hparams_flattens_settings_that_matter():
    from suite import config

    hp = tblog.run_hparams(config.resolve("lenet5"))
    assert hp["model.name"] == "lenet5" and "train.lr" in hp and "data.crop" in hp
    assert not any(k.startswith("log.") for k in hp) and "experiment.description" not in hp
    assert "train.verbose" not in hp


def test_run_logs_grid_confusion_per_class_and_hparams(run_dir):
    root = _load(run_dir)
    tags = set(root.Tags()["tensors"])
    assert {"augmented_training_images", "test_confusion_matrix", "test_per_class_accuracy", "test_accuracy",
            "best_val_accuracy", "_hparams_/session_start_info"} <= tags, tags

    grid = _png(root.Tensors("augmented_training_images")[0])
    assert grid.shape[0] >= 64 and grid.shape[1] >= 8 * 64  # 8 columns of enlarged 8×8 digits
    assert grid.std() > 10  # pictures, not a blank tile
    assert "crop=2" in root.SummaryMetadata("augmented_training_images").summary_description

    cm_img = _png(root.Tensors("test_confusion_matrix")[-1])
    assert cm_img.shape[0] > 300 and cm_img.shape[1] > 300
    assert root.Tensors("test_confusion_matrix")[-1].step == 1  # written after the last (1st) epoch

    table = root.Tensors("test_per_class_accuracy")[-1].tensor_proto.string_val[0].decode()
    assert table.startswith("| class | accuracy |") and table.count("\n") == 2 + 10 - 1  # header + 10 classes

    results = json.loads((run_dir / "results.json").read_text())
    test_acc = float(np.asarray(tblog.tf.make_ndarray(root.Tensors("test_accuracy")[-1].tensor_proto)))
    assert test_acc == pytest.approx(results["test"]["accuracy"], abs=1e-6)

    from tensorboard.plugins.hparams import plugin_data_pb2

    content = root.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert info.hparams["model.name"].string_value == "lenet5"
    assert info.hparams["data.crop"].number_value == 2
    assert info.hparams["train.epochs"].number_value == 1
    assert info.group_name.startswith("lenet5/")


def test_run_logs_op_graph_beside_keras_conceptual_graph(run_dir):
    train = _load(run_dir / "train")
    assert train.Tags()["graph"], "no op graph in train/"
    assert "keras" in train.Tags()["tensors"]
    names = [n.name for n in train.Graph().node]
    assert any("conv" in n for n in names), names[:20]


def test_diverged_run_writes_no_confusion_matrix(tmp_path):
    d = tiny_run(tmp_path, "train.lr=1e4", "train.optimizer=sgd", "train.schedule=constant", "train.batch_size=32",
                 net="lenet5_modern")
    res = json.loads((d / "results.json").read_text())
    if res["status"] != "diverged":
        pytest.skip("this learning rate did not diverge here")
    tags = set(_load(d).Tags()["tensors"])
    assert "augmented_training_images" in tags and "_hparams_/session_start_info" in tags
    assert "test_confusion_matrix" not in tags
