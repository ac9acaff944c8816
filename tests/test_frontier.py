"""`lqvae frontier` on a tiny grid, the Square attack, and `lqvae adapt`."""

import json

import keras
import numpy as np
import pytest

from lqvae_tf.attacks import logits_of, make_attack
from lqvae_tf.classifiers import build_classifier
from lqvae_tf.classifiers.train import compile_classifier
from lqvae_tf.cli.main import main
from lqvae_tf.defenses import LQVAEDefense
from lqvae_tf.evaluation.frontier import FrontierAttacks, detection_scores, grid_configs, roc_auc, score_evading_pgd
from lqvae_tf.models import LQVAE
from lqvae_tf.training.adapt import adapt_classifier

from conftest import tiny_config

# One clean epoch of a tiny network (the preset retrains adversarially after 2 clean epochs).
TINY = {"width": 0.125, "latent_dim": 8, "batch_size": 32, "epochs": 1, "learning_rate": 1e-3, "adversarial": None}


@pytest.fixture(scope="module")
def classifier_path(tmp_path_factory, fmnist_test_arrays):
    images, labels = fmnist_test_arrays
    keras.utils.set_random_seed(0)
    model = build_classifier("A", (28, 28, 1), 10)
    compile_classifier(model, keras.optimizers.Adam(1e-3))
    model.fit(images[-512:, ..., None].astype(np.float32) / 255.0, labels[-512:].astype(np.int64), epochs=2, verbose=0)
    path = tmp_path_factory.mktemp("classifier") / "classifier.keras"
    model.save(path)
    return str(path)


@pytest.fixture(scope="module")
def frontier_dir(tmp_path_factory, classifier_path):
    out = tmp_path_factory.mktemp("frontier")
    grid = {"base": TINY, "points": [{}, {"adversarial": {"mode": "reconstruction", "steps": 1}}]}
    argv = ["frontier", "--grid", json.dumps(grid), "--classifier", classifier_path, "--out", str(out)]
    argv += ["--train-limit", "64", "--n", "16", "--steps", "1", "--restarts", "2", "--eot", "2"]
    argv += ["--square-queries", "5", "--batch-size", "16", "--validation-limit", "32"]
    assert main(argv) == 0
    return out


def test_frontier_writes_a_row_per_point_with_every_measure(frontier_dir):
    report = json.loads((frontier_dir / "frontier.json").read_text())
    rows = report["rows"]
    assert len(rows) == 2 and rows[0]["changed"] == {} and "adversarial" in rows[1]["changed"]
    for row in rows:
        measured = row["measured"]
        assert set(measured["pgd"]) == {"bpda", "soft", "identity"}
        worst_single = min(measured["pgd"][g]["correct"] for g in measured["pgd"])
        assert measured["adaptive"]["correct"] <= worst_single  # the per-image worst, not an average
        assert measured["worst"]["correct"] <= min(measured["adaptive"]["correct"], measured["square"]["correct"])
        assert measured["square_beats_gradient"] == (measured["square"]["correct"] < measured["adaptive"]["correct"])
        assert 0.0 <= measured["detection_auc"]["fgsm"] <= 1.0
        assert 0.0 <= measured["detection_auc"]["score_evading"] <= 1.0
        assert measured["score_evading"]["n"] == 16
        assert measured["clean_alone"]["n"] == 16
    assert report["settings"]["attacks"]["steps"] == 1 and report["settings"]["command"].startswith("lqvae frontier")
    assert "**adaptive**" in (frontier_dir / "frontier.md").read_text()
    assert (frontier_dir / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_frontier_rerun_reuses_every_point_and_measurement(frontier_dir, classifier_path, monkeypatch):
    import lqvae_tf.evaluation.frontier as frontier

    def refuse(*args, **kwargs):
        raise AssertionError("a finished point was trained or measured again")

    monkeypatch.setattr(frontier, "measure_point", refuse)
    monkeypatch.setattr("lqvae_tf.training.train_purifier", refuse)
    before = json.loads((frontier_dir / "frontier.json").read_text())["rows"]
    grid = {"base": TINY, "points": [{}, {"adversarial": {"mode": "reconstruction", "steps": 1}}]}
    attacks = FrontierAttacks(steps=1, restarts=2, eot_samples=2, square_queries=5, n=16, batch_size=16)
    rows = frontier.run_frontier(grid_configs(grid), "fashion_mnist", classifier_path, str(frontier_dir), attacks, 64)
    assert [row["measured"] for row in rows] == [row["measured"] for row in before]


def test_frontier_adapts_the_classifier_per_point_and_reports_it_both_ways(
    frontier_dir, classifier_path, tmp_path, capsys
):
    import shutil

    out = tmp_path / "adapted"
    shutil.copytree(frontier_dir, out)  # the trained points are reused; only adapting and measuring run
    grid = {"base": TINY, "points": [{}]}
    argv = ["frontier", "--grid", json.dumps(grid), "--classifier", classifier_path, "--out", str(out)]
    argv += ["--train-limit", "64", "--n", "16", "--steps", "1", "--restarts", "1", "--eot", "1"]
    argv += ["--square-queries", "2", "--batch-size", "16", "--validation-limit", "32", "--adapt-epochs", "1"]
    assert main(argv) == 0
    report = json.loads((out / "frontier.json").read_text())
    (row,) = report["rows"]
    measured = row["measured"]
    assert report["settings"]["adapt_epochs"] == 1 and measured["adapt_epochs"] == 1
    assert measured["clean_filtered_unadapted"]["n"] == measured["clean_alone_unadapted"]["n"] == 16
    assert list((out / "points" / row["key"]).glob("classifier-adapted-*.keras"))  # kept for the rerun
    assert "adapted to each point's filter" in (out / "frontier.md").read_text()
    capsys.readouterr()
    assert main([*argv[:-1], "-1"]) == 2
    assert "adapt_epochs must be an integer >= 0, got -1" in capsys.readouterr().err


def test_grid_axes_make_the_cartesian_product_and_bad_values_are_named():
    configs = grid_configs({"base": TINY, "axes": {"latent_dim": [8, 16], "lipschitz_k": [0.1, 0.2]}})
    assert [(c.latent_dim, c.lipschitz_k) for c in configs] == [(8, 0.1), (8, 0.2), (16, 0.1), (16, 0.2)]
    with pytest.raises(ValueError, match="adversarial steps must be an integer >= 1, got 0"):
        grid_configs({"points": [{"adversarial": {"steps": 0}}]})
    with pytest.raises(ValueError, match="eps must be in"):
        FrontierAttacks(eps=0.0)


def test_roc_auc_is_one_for_separated_scores_and_half_for_equal_ones():
    assert roc_auc(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert roc_auc(np.array([0.1, 0.2]), np.array([0.1, 0.2])) == 0.5


def test_square_attack_stays_in_the_ball_and_fools_a_linear_model(fmnist_images):
    weights = np.random.default_rng(0).normal(size=(784, 10)).astype(np.float32)

    def logits(images):
        return keras.ops.reshape(images, (-1, 784)) @ weights

    images = fmnist_images[:8]
    labels = np.asarray(logits(images)).argmax(axis=1)
    adversarial = make_attack("square", eps=0.3, n_queries=50)(logits, images, labels)
    assert np.abs(adversarial - images).max() <= 0.3 + 1e-6
    assert (np.asarray(logits(adversarial)).argmax(axis=1) != labels).mean() > 0.5


def test_adapt_fine_tunes_on_purified_images_and_reports_both_ways(frontier_dir, classifier_path, tmp_path):
    purifier = next((frontier_dir / "points").glob("*/purifier.keras"))
    out = tmp_path / "adapted.keras"
    summary = adapt_classifier(
        classifier_path, str(purifier), "fashion_mnist", str(out), epochs=1, limit=64, test_limit=32, verbose=0
    )
    assert set(summary["test_accuracy"]) == {"before", "after"}
    assert set(summary["test_accuracy"]["after"]) == {"alone", "behind_filter"}
    assert keras.models.load_model(out).input_shape == (None, 28, 28, 1)
    assert json.loads(out.with_suffix(".json").read_text())["epochs"] == 1


def test_adapt_refuses_a_classifier_of_another_shape(frontier_dir, tmp_path, capsys):
    purifier = next((frontier_dir / "points").glob("*/purifier.keras"))
    other = tmp_path / "faces.keras"
    build_classifier("A", (64, 64, 3), 2).save(other)
    argv = ["adapt", "--classifier", str(other), "--purifier", str(purifier), "--out", str(tmp_path / "a.keras")]
    assert main(argv) == 2
    assert "takes images of shape (64, 64, 3), the purifier's are (28, 28, 1)" in capsys.readouterr().err


def test_tiny_config_is_what_the_grid_base_builds():
    assert grid_configs({"base": TINY})[0] == tiny_config(latent_dim=8)


def test_score_evading_pgd_lowers_the_detection_score_and_stays_in_the_ball(classifier_path, fmnist_test_arrays):
    images, labels = fmnist_test_arrays
    x, y = images[:32].astype(np.float32) / 255.0, labels[:32].astype(np.int64)
    defense = LQVAEDefense(LQVAE(tiny_config()), value_range=(0.0, 1.0))
    logits = logits_of(keras.models.load_model(classifier_path))
    attacks = FrontierAttacks(eps=0.1, steps=10, restarts=1, n=32, batch_size=32)
    scale = float(np.median(detection_scores(defense, x)))
    evading = score_evading_pgd(defense, logits, attacks, scale)(None, x, y)
    plain = make_attack("pgd", eps=0.1, eps_iter=attacks.pgd_step_size, nb_iter=10)(
        lambda images: logits(defense.differentiable(images, "bpda")), x, y
    )
    assert np.abs(evading - x).max() <= 0.1 + 1e-6 and evading.min() >= 0.0 and evading.max() <= 1.0
    # The detector-aware attack ends with lower scores than the one that ignores the detector.
    evading_score, plain_score = (
        detection_scores(defense, evading).mean(),
        detection_scores(defense, np.asarray(plain)).mean(),
    )
    print(f"mean score: evading {evading_score:.5f}, plain {plain_score:.5f}")
    assert evading_score < plain_score
    with pytest.raises(ValueError, match="score_scale must be positive"):
        score_evading_pgd(defense, logits, attacks, 0.0)
