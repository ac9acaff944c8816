"""The paper's Table 5 setting as the authors' code runs it, and the harness options it needs."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from lqvae_tf import LQVAE
from lqvae_tf.attacks import make_attack
from lqvae_tf.attacks.authors import minmax_rescale
from lqvae_tf.defenses import LQVAEDefense, NoDefense
from lqvae_tf.evaluation import Evaluation
from lqvae_tf.evaluation.suite import AttackSpec

from conftest import tiny_config


@pytest.fixture(scope="module")
def defense():
    keras.utils.set_random_seed(7)
    return LQVAEDefense(LQVAE(tiny_config(sample_noise_scale=0.05)))


@pytest.fixture(scope="module")
def linear_classifier():
    keras.utils.set_random_seed(8)
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])


def test_soft_surrogate_samples_the_latent_and_passes_gradients_through_the_soft_code(
    defense, linear_classifier, fmnist_images
):
    x = tf.constant(fmnist_images[:8])
    first, second = defense.differentiable(x, "soft"), defense.differentiable(x, "soft")
    assert not np.array_equal(first.numpy(), second.numpy())  # z = mu + 0.05 sigma eps: a new draw each call
    assert not np.array_equal(first.numpy(), defense.purify(fmnist_images[:8]))  # not the deployed filter
    assert defense.random_gradient("soft") and not defense.random_gradient("bpda")
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(linear_classifier(defense.differentiable(x, "soft"))[:, 0])
    gradient = tape.gradient(loss, x).numpy()
    assert np.abs(gradient).sum() > 0


def test_soft_surrogate_decodes_the_soft_code_of_the_sample_with_the_hard_decoder(defense, fmnist_images):
    x = fmnist_images[:4]
    model = defense.model
    keras.utils.set_random_seed(11)
    surrogate = defense.differentiable(tf.constant(x), "soft").numpy()
    keras.utils.set_random_seed(11)
    mean, log_var = model.encoder(model.to_internal(tf.constant(x)), training=False)
    expected = model.from_internal(model.decoder_hard(model.quantize_soft(model.sampling([mean, log_var]))))
    np.testing.assert_allclose(surrogate, expected.numpy(), atol=1e-5)


def test_authors_fgsm_is_one_signed_step_on_sigmoid_cross_entropy_then_min_max_rescaled(linear_classifier):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (6, 28, 28, 1)).astype(np.float32)
    y = np.arange(6) % 10
    attack = make_attack("authors_fgsm")
    assert attack.params == {"eps": 0.15, "out_of_range": "minmax", "clip_min": 0.0, "clip_max": 1.0}
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        logits = linear_classifier(xt)
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.one_hot(y, 10), logits))
    stepped = x + 0.15 * np.sign(tape.gradient(loss, xt).numpy())
    assert stepped.min() < 0 and stepped.max() > 1  # unclipped, the step leaves the pixel range
    adversarial = attack(linear_classifier, x, y)
    np.testing.assert_allclose(adversarial, minmax_rescale(tf.constant(stepped), 0.0, 1.0).numpy(), atol=1e-5)
    assert np.allclose(adversarial.min(axis=(1, 2, 3)), 0) and np.allclose(adversarial.max(axis=(1, 2, 3)), 1)
    clipped = make_attack("authors_fgsm", out_of_range="clip")(linear_classifier, x, y)
    np.testing.assert_allclose(clipped, np.clip(stepped, 0, 1), atol=1e-5)
    with pytest.raises(ValueError, match="out_of_range must be one of"):
        make_attack("authors_fgsm", out_of_range="wrap")
    with pytest.raises(ValueError, match="eps must be positive"):
        make_attack("authors_fgsm", eps=0.0)


def test_the_authors_end_to_end_row_attacks_through_the_sampled_soft_path(defense, linear_classifier, fmnist_images):
    x, y = fmnist_images[:8], np.arange(8) % 10
    calls = []
    original = defense.differentiable

    def counting(images, mode="bpda"):
        calls.append(mode)
        return original(images, mode)

    defense.differentiable = counting
    try:
        evaluation = Evaluation(x, y, {"lin": linear_classifier}, [defense], verbose=False)
        row = evaluation.end_to_end(make_attack("authors_fgsm"), "lin", gradient="soft", eot_samples=1)
    finally:
        del defense.differentiable
    assert set(calls) == {"soft"}
    assert row.params["gradient"] == "soft" and row.params["eps"] == 0.15


def test_attack_specs_carry_their_own_parameters_restarts_and_eot():
    spec = AttackSpec.parse("bpda-pgd[eps=0.1,nb_iter=40,eps_iter=0.01,restarts=2,eot=8]")
    assert (spec.setting, spec.how, spec.attack) == ("end-to-end", "bpda", "pgd")
    assert dict(spec.params) == {"eps": 0.1, "nb_iter": 40, "eps_iter": 0.01}
    assert (spec.restarts, spec.eot) == (2, 8)
    assert AttackSpec.parse("soft-authors_fgsm") == AttackSpec("end-to-end", "soft", "authors_fgsm")
    assert AttackSpec.parse("papernot-deepfool[max_iter=50]").params == (("max_iter", 50),)
    with pytest.raises(ValueError, match="restarts must be a positive integer"):
        AttackSpec.parse("pgd[restarts=0]")
    with pytest.raises(ValueError, match="eot and skip apply to end-to-end specs only"):
        AttackSpec.parse("fgsm[eot=4]")
    with pytest.raises(ValueError, match="key=value"):
        AttackSpec.parse("pgd[eps]")
    with pytest.raises(ValueError, match="one \\[...\\] at the end"):
        AttackSpec.parse("pgd[eps=0.1")


class FlipOnSecondCall:
    """A fake attack: its first run changes nothing, later runs move every image to class 0."""

    name = "flip-late"
    params: dict = {}

    def __init__(self):
        self.sizes = []

    def __call__(self, model_fn, x, y):
        self.sizes.append(len(x))
        return x.copy() if len(self.sizes) == 1 else np.zeros_like(x)


def test_restarts_rerun_the_attack_on_the_images_still_standing_only(linear_classifier):
    labels = np.arange(1, 9) % 10  # never 0, the class of a blank image below
    images = np.random.default_rng(1).uniform(0, 1, (8, 28, 28, 1)).astype(np.float32)
    images[:3] = 0  # already blank: the first run fools the model on these

    def model_fn(x):  # class 0 for a blank image, else the true label
        blank = tf.cast(tf.reduce_max(x, axis=[1, 2, 3]) == 0, tf.float32)[:, None]
        truth = tf.one_hot(tf.constant(labels[: x.shape[0]]), 10)
        return blank * tf.one_hot(tf.zeros(tf.shape(x)[0], tf.int32), 10) + (1 - blank) * truth

    evaluation = Evaluation(images, labels, {"lin": linear_classifier}, [], verbose=False)
    once, twice = FlipOnSecondCall(), FlipOnSecondCall()
    np.testing.assert_array_equal(evaluation.craft(once, model_fn, "k1", "once"), images)
    assert not evaluation.craft(twice, model_fn, "k2", "twice", restarts=3).any()
    assert once.sizes == [8] and twice.sizes == [8, 5]  # the second run on the 5 standing; no third

    # A surrogate that calls every image fooled (class 0) retries none by itself; judged by what
    # is scored (here: the true label unless blank), the standing five are retried all the same.
    def surrogate(x):
        return tf.one_hot(tf.zeros(tf.shape(x)[0], tf.int32), 10)

    by_surrogate, judged = FlipOnSecondCall(), FlipOnSecondCall()
    evaluation.craft(by_surrogate, surrogate, "k3", "by its surrogate", restarts=2)
    assert not evaluation.craft(judged, surrogate, "k4", "judged", restarts=2, judge=model_fn).any()
    assert by_surrogate.sizes == [8] and judged.sizes == [8, 5]


def test_soft_path_restarts_are_judged_by_the_deployed_filter(defense, linear_classifier, fmnist_images, monkeypatch):
    x, y = fmnist_images[:6], np.arange(6) % 10
    evaluation = Evaluation(x, y, {"lin": linear_classifier}, [defense], verbose=False)
    judges = []
    original = Evaluation.craft

    def recording(self, *args, judge=None, **kwargs):
        judges.append(judge)
        return original(self, *args, judge=judge, **kwargs)

    monkeypatch.setattr(Evaluation, "craft", recording)
    evaluation.end_to_end(make_attack("pgd", eps=0.1, nb_iter=1, eps_iter=0.05), "lin", gradient="soft", restarts=2)
    judge = next(j for j in judges if j is not None)  # the classifier alone's adversarials have none
    expected = linear_classifier(defense.purify(x))
    np.testing.assert_allclose(np.asarray(judge(tf.constant(x))), np.asarray(expected), atol=1e-5)


class NamedNone(NoDefense):
    name = "costly-none"
    costly = True


def test_a_limited_defense_is_scored_on_its_subsample_and_its_purifications_are_cached(tmp_path, linear_classifier):
    images = np.random.default_rng(2).uniform(0, 1, (10, 28, 28, 1)).astype(np.float32)
    labels = np.arange(10) % 10
    purified = []
    limited = NamedNone()
    original = limited.purify
    limited.purify = lambda x: purified.append(len(x)) or original(x)
    for _ in range(2):
        evaluation = Evaluation(
            images,
            labels,
            {"lin": linear_classifier},
            [limited],
            cache_dir=str(tmp_path),
            batch_size=4,
            verbose=False,
            defense_limits={"costly-none": 6},
        )
        row = evaluation.white_box(make_attack("fgsm", eps=0.05), "lin")
    assert row.no_defense.n == 10 and row.defended["costly-none"].n == 6 and row.clean_defended["costly-none"].n == 6
    assert purified == [4, 2, 4, 2]  # clean and attacked subsample, batch by batch, the first time only
    with pytest.raises(ValueError, match="defense_limits"):
        Evaluation(images, labels, {"lin": linear_classifier}, [limited], defense_limits={"madry": 5})


def test_a_skipped_defense_is_reported_not_run_and_the_paper_row_is_labelled(defense, linear_classifier, fmnist_images):
    from lqvae_tf.evaluation import markdown

    assert AttackSpec.parse("bpda-pgd[skip=defense-gan+other]").skip == ("defense-gan", "other")
    with pytest.raises(ValueError, match="end-to-end specs only"):
        AttackSpec.parse("fgsm[skip=lq-vae]")
    x, y = fmnist_images[:6], np.arange(6) % 10
    second = NamedNone()
    evaluation = Evaluation(
        x, y, {"lin": linear_classifier}, [defense, second], verbose=False, defense_limits={"costly-none": 3}
    )
    paper_row = evaluation.end_to_end(make_attack("authors_fgsm"), "lin", gradient="soft")
    adaptive = evaluation.end_to_end(
        make_attack("pgd", eps=0.1, nb_iter=2, eps_iter=0.05), "lin", restarts=2, skip=["costly-none"]
    )
    assert "costly-none" not in adaptive.defended and adaptive.params["skip"] == ["costly-none"]
    with pytest.raises(ValueError, match="skip names no defense"):
        evaluation.end_to_end(make_attack("fgsm"), "lin", skip=["defense-gan"])
    table = markdown([paper_row, adaptive])
    assert "| paper's setting (authors' BPDA.py) | authors_fgsm | lin | 6 |" in table
    assert "| adaptive: BPDA-pgd eps 0.1, 2 steps x 2 restarts | pgd | lin | 6 |" in table
    assert "| not run |" in table and "(n=3)" in table


def test_a_list_of_specs_splits_on_commas_outside_brackets_only():
    from lqvae_tf.evaluation.suite import split_specs

    text = "fgsm, bpda-pgd[eps=0.1,nb_iter=40,restarts=2],soft-authors_fgsm"
    assert split_specs(text) == ["fgsm", "bpda-pgd[eps=0.1,nb_iter=40,restarts=2]", "soft-authors_fgsm"]


def test_on_restricts_a_row_to_the_named_classifiers_and_rejects_unknown_names(tmp_path, fmnist_images):
    from lqvae_tf.evaluation.suite import run_suite

    assert AttackSpec.parse("bpda-pgd[on=A+C]").on == ("A", "C")
    keras.utils.set_random_seed(9)
    classifiers = {
        name: keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
        for name in ("A", "B")
    }
    purifier = LQVAE(tiny_config())
    x, y = fmnist_images[:4], np.arange(4) % 10
    specs = ["bpda-fgsm[eps=0.1]", "identity-fgsm[eps=0.1,on=B]"]
    written = run_suite(x, y, purifier, classifiers, specs, str(tmp_path), verbose=False)
    with open(written["json"], encoding="utf-8") as handle:
        rows = json.load(handle)["rows"]
    attacked = sorted((row["params"].get("gradient", ""), row["classifier"]) for row in rows)
    # On B both backward passes ran: their per-image worst follows them.
    assert attacked == [("bpda", "A"), ("bpda", "B"), ("identity", "B"), ("per-image worst", "B")]
    with pytest.raises(ValueError, match="on= names \\['Z'\\]"):
        run_suite(x, y, purifier, classifiers, ["bpda-fgsm[on=Z]"], str(tmp_path / "bad"), verbose=False)


def test_n_scores_a_costly_row_on_the_first_images_of_the_sample_only(tmp_path, fmnist_images):
    from lqvae_tf.evaluation.suite import run_suite

    assert AttackSpec.parse("cw_l2[n=100,on=A]").n == 100 and AttackSpec.parse("cw_l2").n is None
    with pytest.raises(ValueError, match="n must be a positive integer"):
        AttackSpec.parse("cw_l2[n=0]")
    keras.utils.set_random_seed(9)
    classifiers = {"A": keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])}
    purifier = LQVAE(tiny_config())
    x, y = fmnist_images[:6], np.arange(6) % 10
    # n above the sample's size scores the whole sample; the Fig. 3 figures take the cw row's 2 images.
    specs = ["fgsm[eps=0.1]", "cw[n=2]", "bpda-fgsm[eps=0.1,n=3]", "pgd[n=60,nb_iter=2]"]
    written = run_suite(x, y, purifier, classifiers, specs, str(tmp_path), verbose=False)
    with open(written["json"], encoding="utf-8") as handle:
        rows = json.load(handle)["rows"]
    counts = {
        (row["setting"], row["attack"]): {row["n"], *(cell["n"] for cell in row["defended"].values())} for row in rows
    }
    assert counts == {
        ("white-box", "fgsm"): {6},
        ("white-box", "cw"): {2},
        ("end-to-end", "fgsm"): {3},
        ("white-box", "pgd"): {6},
    }
    # The parameters a spec set (not n=, on=, ...) are the row's variant, and its table names them.
    variants = {(row["setting"], row["attack"]): row["variant"] for row in rows}
    assert variants[("white-box", "fgsm")] == "eps=0.1" and variants[("white-box", "cw")] == ""
    assert variants[("white-box", "pgd")] == "nb_iter=2" and variants[("end-to-end", "fgsm")] == "eps=0.1"
    table = open(written["md"], encoding="utf-8").read()
    assert "| fgsm[eps=0.1] | A |" in table and "| cw | A |" in table
    assert os.path.isfile(written["bit_flips"]) and os.path.isfile(written["tsne"])
