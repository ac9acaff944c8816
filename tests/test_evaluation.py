"""Evaluation: gradient masking vs BPDA, the harness's numbers, reports, substitutes, composition."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from lqvae_tf import LQVAE
from lqvae_tf.defenses import Defense, LQVAEDefense, NoDefense
from lqvae_tf.evaluation import Accuracy, Evaluation, accuracy_of, csv_text, markdown, write_reports
from lqvae_tf.generated import is_generated

from conftest import tiny_config


@pytest.fixture(scope="module")
def defense():
    keras.utils.set_random_seed(3)
    return LQVAEDefense(LQVAE(tiny_config()))


@pytest.fixture(scope="module")
def linear_classifier():
    keras.utils.set_random_seed(4)
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])


@pytest.mark.parametrize("mode", ["naive", "bpda", "identity"])
def test_every_gradient_mode_has_the_deployed_forward_pass(defense, fmnist_images, mode):
    x = fmnist_images[:8]
    np.testing.assert_allclose(defense.differentiable(tf.constant(x), mode).numpy(), defense.purify(x), atol=1e-5)


def test_naive_gradient_through_the_hard_quantizer_is_zero_and_bpdas_is_not(defense, linear_classifier, fmnist_images):
    x = tf.constant(fmnist_images[:8])
    gradients = {}
    for mode in ("naive", "bpda", "identity"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(linear_classifier(defense.differentiable(x, mode))[:, 0])
        gradient = tape.gradient(loss, x)
        gradients[mode] = np.zeros(x.shape) if gradient is None else gradient.numpy()
    assert not np.any(gradients["naive"])  # gradient masking: an attack that trusts it learns nothing
    assert np.abs(gradients["bpda"]).sum() > 0
    assert np.abs(gradients["identity"]).sum() > 0


def test_stochastic_defense_draws_and_deterministic_one_does_not(defense, fmnist_images):
    x = fmnist_images[:4]
    np.testing.assert_array_equal(defense.purify(x), defense.purify(x))
    stochastic = LQVAEDefense(LQVAE(tiny_config(sample_noise_scale=1.0)), stochastic=True)
    assert not np.array_equal(stochastic.purify(x), stochastic.purify(x))


def test_defense_maps_value_ranges(fmnist_images):
    model = LQVAE(tiny_config(value_range=(-1.0, 1.0)))
    x = fmnist_images[:4]
    np.testing.assert_allclose(LQVAEDefense(model).purify(x), (model.purify(x * 2 - 1) + 1) / 2, atol=1e-5)


def test_protect_composes_purifier_and_classifier(defense, linear_classifier, fmnist_images):
    x = fmnist_images[:5]
    protected = defense.protect(linear_classifier)
    np.testing.assert_allclose(protected(x).numpy(), linear_classifier(defense.purify(x)).numpy(), atol=1e-5)


# ---------------------------------------------------------------------------- crafted case
class LevelClassifier(keras.Model):
    """Predicts class k for an image whose pixels all equal k / 10 (one-hot logits)."""

    def call(self, images, training=False):
        level = tf.cast(tf.round(tf.reduce_mean(images, axis=[1, 2, 3]) * 10), tf.int32)
        return tf.one_hot(level % 10, 10) * 10.0


class ShiftEvenImages:
    """A fake attack: moves every even-indexed image to the next class, leaves odd ones."""

    name = "shift"
    params = {"step": 0.1}

    def __call__(self, model_fn, x, y):
        shifted = x.copy()
        shifted[::2] = ((np.round(x[::2] * 10) + 1) % 10) / 10
        return shifted


class UndoShift(Defense):
    """A fake defense that knows the true levels of the first `fixed` images."""

    name = "undo"

    def __init__(self, clean, fixed):
        self.clean, self.fixed = clean, fixed

    def purify(self, images):
        out = np.array(images, np.float32)
        out[: self.fixed] = self.clean[: self.fixed]
        return out

    def differentiable(self, images, mode="bpda"):
        return images

    def cache_parts(self):
        return ({"class": "UndoShift", "fixed": self.fixed}, self.clean)


def _level_evaluation(**kwargs) -> tuple[np.ndarray, np.ndarray, Evaluation]:
    """Ten flat images of levels 0..9, classifier "L" and the `UndoShift` defense (fixes 4)."""
    labels = np.arange(10) % 10
    images = np.ones((10, 28, 28, 1), np.float32) * (labels / 10)[:, None, None, None]
    evaluation = Evaluation(
        images, labels, {"L": LevelClassifier()}, [UndoShift(images, fixed=4)], verbose=False, **kwargs
    )
    return images, labels, evaluation


def test_table_numbers_are_computed_from_predictions(tmp_path):
    _, _, evaluation = _level_evaluation(cache_dir=str(tmp_path / "cache"))
    row = evaluation.white_box(ShiftEvenImages(), "L")
    assert (row.no_attack.correct, row.no_defense.correct, row.defended["undo"].correct) == (10, 5, 7)
    assert row.outcomes["no defense"].tolist() == [i % 2 == 1 for i in range(10)]  # the even ones shifted
    assert row.outcomes["undo"].sum() == 7 and "outcomes" not in row.to_dict()  # per image, in memory only
    assert row.n == 10 and row.params == {"step": 0.1}
    low, high = Accuracy(5, 10).interval
    assert (round(low, 1), round(high, 1)) == (23.7, 76.3)  # Wilson interval, 5 of 10
    table = markdown([row])
    clean, attacked = "| 100.00 [72.2, 100.0] | 100.00 [72.2, 100.0] |", " 50.00 [23.7, 76.3] | 70.00 [39.7, 89.2] |"
    assert "| shift | L | 10 " + clean + attacked + " 1.40 / 0.05 |  | step=0.1 |" in table
    assert "| **average** |  |  | 100.00 | 100.00 | 50.00 | 70.00 |  |  |" in table
    # Black-box rows of two attacks get an average each, never one mixing them.
    transfers = [
        dataclasses.replace(row, setting="black-box", source="M", attack="deepfool"),
        dataclasses.replace(row, setting="black-box", source="M", attack="fgsm", no_defense=Accuracy(1, 10)),
    ]
    black_box = markdown(transfers)
    assert "| **average, deepfool** |  |  | 100.00 | 100.00 | 50.00 | 70.00 |  |  |" in black_box
    assert "| **average, fgsm** |  |  | 100.00 | 100.00 | 10.00 | 70.00 |  |  |" in black_box
    assert "| **average** |" not in black_box
    assert row.seconds is None and "Time: not recorded." in table  # timed by run_suite, not by a bare row
    timed = [dataclasses.replace(row, seconds=12.0), dataclasses.replace(row, attack="slow", seconds=30.4)]
    assert "Time: 42 s of wall time this run over 2 rows (the slowest: slow on L, 30 s;" in markdown(timed)
    assert "over 1 rows; 1 rows untimed (the slowest: shift on L, 12 s;" in markdown([timed[0], row])
    # row_seconds, then the no-attack column's perturbation size (none: no adversarials).
    assert csv_text(timed).splitlines()[1].endswith(",12.0,,") and csv_text([row]).splitlines()[1].endswith(",,,")
    lines = csv_text([row]).splitlines()
    assert lines[2].startswith("white-box,shift,L,L,undo (no attack),100.00,")
    assert lines[3].startswith("white-box,shift,L,L,no defense,50.00,23.66,76.34,5,10")
    paths = write_reports([row], str(tmp_path / "out"), meta={"dataset": "crafted"})
    saved = json.loads(open(paths["json"]).read())
    assert is_generated(open(paths["md"]).read())
    assert saved["rows"][0]["defended"]["undo"]["correct"] == 7 and saved["meta"]["dataset"] == "crafted"
    cached = sorted(path.name for path in (tmp_path / "cache").iterdir())  # the adversarial batch, its time
    assert len(cached) == 2 and cached[1] == cached[0] + ".seconds"


class ConfidentLevelClassifier(LevelClassifier):
    """The same predictions with logits twice as large: what `ShiftUnlessConfident` cannot attack."""

    def call(self, images, training=False):
        return super().call(images) * 2.0


class ShiftUnlessConfident(ShiftEvenImages):
    """Shifts the even images, unless the attacked model's logits exceed 15 (then returns x)."""

    name = "shift-unless-confident"

    def __call__(self, model_fn, x, y):
        if float(tf.reduce_max(model_fn(tf.constant(x)))) > 15.0:
            return x.copy()
        return super().__call__(model_fn, x, y)


def test_robust_classifier_columns_are_attacked_themselves_in_white_box_and_fed_transfers_in_black_box():
    images, labels, evaluation = _level_evaluation(robust_classifiers={"madry": {"L": ConfidentLevelClassifier()}})
    white = evaluation.white_box(ShiftUnlessConfident(), "L")
    assert white.no_defense.correct == 5  # crafted on L: even images shifted
    assert white.defended["madry"].correct == 10  # crafted on the robust model itself: it resists
    assert white.clean_defended["madry"].correct == 10 and white.defended["undo"].correct == 7
    black = evaluation.black_box(ShiftUnlessConfident(), "L", "S", LevelClassifier())
    assert black.defended["madry"].correct == 5  # the substitute's transfers, fed to the robust model
    with pytest.raises(ValueError, match="classifiers \\['X'\\] are not among \\['L'\\]"):
        Evaluation(images, labels, {"L": LevelClassifier()}, [], robust_classifiers={"m": {"X": LevelClassifier()}})


def test_stacked_columns_put_the_purifier_in_front_of_the_robust_classifier_in_every_setting():
    robust = {"madry": {"L": ConfidentLevelClassifier()}, "plain": {"L": LevelClassifier()}}
    stacked = {"madry+undo": ("undo", "madry"), "plain+undo": ("undo", "plain")}
    images, labels, evaluation = _level_evaluation(robust_classifiers=robust, stacked=stacked)
    attack = ShiftUnlessConfident()
    white = evaluation.white_box(attack, "L")
    # Crafted on each robust classifier alone, then purified: the confident one is not shifted;
    # the plain one's five shifted images meet the filter, which restores the first four (two shifted).
    assert (white.defended["madry+undo"].correct, white.defended["plain+undo"].correct) == (10, 7)
    assert white.clean_defended["madry+undo"].correct == white.clean_defended["plain+undo"].correct == 10
    black = evaluation.black_box(attack, "L", "S", LevelClassifier())
    assert black.defended["madry+undo"].correct == 7  # the substitute's transfers, through filter and model
    end = evaluation.end_to_end(attack, "L", gradient="bpda")
    assert (end.defended["madry+undo"].correct, end.defended["plain+undo"].correct) == (10, 7)
    skipped = evaluation.end_to_end(attack, "L", gradient="identity", skip=["undo"])
    assert not {"undo", "madry+undo", "plain+undo"} & set(skipped.defended)  # the filter was not attacked
    assert "| madry+undo |" in markdown([white])
    with pytest.raises(ValueError, match="stacked column 'x': \\('undo', 'trades'\\) must name"):
        _level_evaluation(robust_classifiers=robust, stacked={"x": ("undo", "trades")})


def test_cached_adversarials_are_reused(tmp_path):
    labels = np.arange(10) % 10
    images = np.ones((10, 28, 28, 1), np.float32) * (labels / 10)[:, None, None, None]
    calls = []

    class Counting(ShiftEvenImages):
        def __call__(self, model_fn, x, y):
            calls.append(len(x))
            return super().__call__(model_fn, x, y)

    counts = []
    for run in range(3):
        if run == 2:  # a batch cached before its time was kept
            next(tmp_path.glob("*.seconds")).unlink()
        evaluation = Evaluation(
            images,
            labels,
            {"L": LevelClassifier()},
            [NoDefenseNamed()],
            cache_dir=str(tmp_path),
            batch_size=4,
            verbose=False,
        )
        evaluation.white_box(Counting(), "L")
        counts.append(evaluation.untimed_batches)
    assert calls == [4, 4, 2]  # three batches the first time, none after
    assert len(list(tmp_path.glob("*.npy.seconds"))) == 2 and counts == [0, 0, 1]


class NoDefenseNamed(NoDefense):
    name = "identity-filter"


def test_accuracy_of_checks_its_inputs():
    assert accuracy_of(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1])).correct == 1
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        accuracy_of(np.array([1, 1, 0]), np.array([1, 1]))
    with pytest.raises(ValueError, match="not 'none'"):
        Evaluation(np.zeros((1, 28, 28, 1)), np.zeros(1), {}, [NoDefense()])


def test_papernot_substitute_learns_to_agree_with_its_oracle(fmnist_test_arrays):
    from lqvae_tf.attacks.substitute import train_substitute

    images = fmnist_test_arrays[0][:600].astype(np.float32) / 255.0
    keras.utils.set_random_seed(5)
    oracle_model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    oracle_model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    oracle_model.fit(images[:400], fmnist_test_arrays[1][:400], epochs=5, verbose=0)

    def oracle(x):
        return oracle_model.predict(x, verbose=0).argmax(-1)

    def build():
        return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])

    substitute = train_substitute(oracle, build, images[:50], rounds=3, epochs=10, seed=0)
    agreement = (substitute.predict(images[400:], verbose=0).argmax(-1) == oracle(images[400:])).mean()
    assert agreement > 0.4, agreement  # chance is about 0.1


def test_eot_averages_a_stochastic_defense_over_samples(fmnist_images, linear_classifier):
    from lqvae_tf.attacks import make_attack

    stochastic = LQVAEDefense(LQVAE(tiny_config(sample_noise_scale=1.0)), stochastic=True, name="lq-vae-random")
    calls = []
    original = stochastic.differentiable

    def counting(images, mode="bpda"):
        calls.append(mode)
        return original(images, mode)

    stochastic.differentiable = counting
    x, y = fmnist_images[:8], np.arange(8) % 10
    evaluation = Evaluation(x, y, {"lin": linear_classifier}, [stochastic], verbose=False)
    row = evaluation.end_to_end(make_attack("fgsm", eps=0.1), "lin", gradient="bpda", eot_samples=3)
    assert row.params["eot_samples"] == 3 and row.params["gradient"] == "bpda"
    assert calls.count("bpda") % 3 == 0 and calls.count("bpda") >= 3  # three draws per gradient


def test_the_cache_key_tells_apart_every_setting_of_a_defense():
    model = LQVAE(tiny_config())
    key = Evaluation.defense_key
    assert key(LQVAEDefense(model)) == key(LQVAEDefense(model, name="other-name"))  # the name changes no output
    assert key(LQVAEDefense(model)) != key(LQVAEDefense(model, stochastic=True))
    assert key(LQVAEDefense(model)) != key(LQVAEDefense(model, value_range=(-1.0, 1.0)))
    assert key(LQVAEDefense(model)) != key(LQVAEDefense(LQVAE(tiny_config(band_threshold=0.2))))


def test_end_to_end_adversarials_of_differently_configured_defenses_are_not_shared(
    tmp_path, fmnist_images, linear_classifier
):
    from lqvae_tf.attacks import make_attack

    model = LQVAE(tiny_config(sample_noise_scale=1.0))
    x, y = fmnist_images[:4], np.arange(4)
    written = []
    for stochastic in (False, True):
        defense = LQVAEDefense(model, stochastic=stochastic)
        evaluation = Evaluation(x, y, {"lin": linear_classifier}, [defense], cache_dir=str(tmp_path), verbose=False)
        before = set(tmp_path.glob("*.npy"))
        evaluation.end_to_end(make_attack("fgsm", eps=0.1), "lin")
        written.append(set(tmp_path.glob("*.npy")) - before)
    assert len(written[0]) == 2 and len(written[1]) == 1  # the second defense crafts its own batch


def test_a_defense_must_declare_its_cache_parts():
    class Incomplete(Defense):
        def purify(self, images):
            return images

        def differentiable(self, images, mode="bpda"):
            return images

    with pytest.raises(TypeError, match="cache_parts"):
        Incomplete()


class _ThresholdCode(NoDefense):
    """The identity with a binary code (pixels above one half): a defense with a latent code whose
    symbols a perturbation visibly flips, as a trained LQ-VAE's do."""

    name = "coded"

    def codes(self, images):
        return np.asarray(images).reshape(len(images), -1)[:, ::7] > 0.5


def test_every_row_reports_the_code_symbols_its_adversarials_flip(fmnist_images, linear_classifier):
    from lqvae_tf.attacks import make_attack

    coded, identity = _ThresholdCode(), NoDefense()
    identity.name = "identity"  # a column without a latent code
    x, y = fmnist_images[:16], np.arange(16) % 10
    evaluation = Evaluation(x, y, {"lin": linear_classifier}, [coded, identity], verbose=False)
    strong = evaluation.white_box(make_attack("fgsm", eps=0.3), "lin")
    assert set(strong.bit_flips) == {"coded"}  # only a defense with a latent code has the measure
    adversarial = evaluation.adversarials_on(make_attack("fgsm", eps=0.3), "lin")
    expected = 100 * (coded.codes(x) != coded.codes(adversarial)).mean()
    assert strong.bit_flips["coded"] == pytest.approx(expected, abs=0.01) and expected > 0
    weak = evaluation.white_box(make_attack("fgsm", eps=1e-6), "lin")
    assert weak.bit_flips["coded"] < strong.bit_flips["coded"]
    assert strong.to_dict()["bit_flips"] == strong.bit_flips
    table = markdown([strong])
    assert "code symbols flipped %" in table and f"| {strong.bit_flips['coded']:.1f} |" in table


def test_a_column_scored_on_a_subsample_measures_its_bit_flips_on_that_subsample(fmnist_images, linear_classifier):
    from lqvae_tf.attacks import make_attack

    coded = _ThresholdCode()
    x, y = fmnist_images[:16], np.arange(16) % 10
    evaluation = Evaluation(x, y, {"lin": linear_classifier}, [coded], verbose=False, defense_limits={"coded": 5})
    row = evaluation.white_box(make_attack("fgsm", eps=0.3), "lin")
    adversarial = evaluation.adversarials_on(make_attack("fgsm", eps=0.3), "lin")
    assert row.defended["coded"].n == 5 and row.flips["coded"].shape == (5,)
    expected = 100 * (coded.codes(x[:5]) != coded.codes(adversarial[:5])).mean()
    assert row.bit_flips["coded"] == pytest.approx(expected, abs=0.01)


class _Negative(NoDefense):
    """The photographic negative, 1 - x, differentiable: an attack crafted through it pushes the
    other way, so on images with black backgrounds its perturbations clip elsewhere than those
    crafted on the classifier alone and have another size."""

    name = "negative"

    def cache_parts(self) -> tuple:
        return ({"class": "_Negative"},)

    def purify(self, images):
        return 1.0 - np.asarray(images, np.float32)

    def differentiable(self, images, mode="bpda"):
        return 1.0 - images


def test_each_column_fed_its_own_adversarials_reports_their_size(fmnist_images, linear_classifier):
    from lqvae_tf.attacks import make_attack
    from lqvae_tf.evaluation.harness import distortion

    x, y = fmnist_images[:16], np.arange(16) % 10
    evaluation = Evaluation(x, y, {"lin": linear_classifier}, [_Negative()], verbose=False)
    attack = make_attack("fgsm", eps=0.3)
    white = evaluation.white_box(attack, "lin")
    assert white.column_distortion == {}  # the defense was fed the classifier alone's adversarials
    assert white.distortion == distortion(x, evaluation.adversarials_on(attack, "lin"))
    row = evaluation.end_to_end(attack, "lin")
    assert row.distortion == white.distortion  # the classifier alone's, as before
    own = row.column_distortion["negative"]
    assert set(row.column_distortion) == {"negative"} and own != row.distortion
    assert 0.29 < own["mean_linf"] <= 0.3 + 1e-6 and row.to_dict()["column_distortion"] == row.column_distortion
    cell = f"{row.distortion['mean_l2']:.2f} / {row.distortion['mean_linf']:.2f}; negative {own['mean_l2']:.2f} / "
    assert f"| {cell}" in markdown([row])
    lines = {line.split(",")[4]: line for line in csv_text([row]).splitlines()[1:]}
    assert lines["negative"].split(",")[-2] == str(own["mean_l2"])
    assert lines["no defense"].split(",")[-2] == str(row.distortion["mean_l2"])
    assert lines["no attack"].endswith(",,")  # no adversarials, no size


def _e2e(attack, correct, eps=0.1, gradient="bpda", **params):
    from lqvae_tf.evaluation.harness import Row

    params = {"eps": eps, "gradient": gradient, "eot_samples": 1, "restarts": 2, **params}
    return Row(
        "end-to-end",
        attack,
        params,
        "A",
        "A",
        Accuracy(99, 100),
        Accuracy(0, 100),
        {name: Accuracy(c, 100) for name, c in correct.items()},
    )


def test_step_doubling_is_flagged_beyond_two_points_and_passes_within():
    from lqvae_tf.evaluation.report import attack_checks

    rows = [
        _e2e("pgd", {"lq-vae": 60, "madry": 50}, nb_iter=40),
        _e2e("pgd", {"lq-vae": 57, "madry": 49}, nb_iter=80),  # lq-vae moves 3 points: not converged
        _e2e("pgd", {"lq-vae": 30}, eps=0.3, nb_iter=40),
        _e2e("pgd", {"lq-vae": 29}, eps=0.3, nb_iter=80),
    ]
    checks = attack_checks(rows)
    flagged = [line for line in checks if line.startswith("**FLAG** step doubling")]
    assert len(flagged) == 1 and "eps 0.1" in flagged[0] and "lq-vae +3.00" in flagged[0] and "madry" not in flagged[0]
    assert any(line.startswith("step doubling") and "eps 0.3" in line for line in checks)


def test_square_is_flagged_where_it_beats_every_gradient_attack():
    from lqvae_tf.evaluation.report import attack_checks

    rows = [
        _e2e("pgd", {"lq-vae": 60, "madry": 50}, nb_iter=40),
        _e2e("pgd", {"lq-vae": 55, "madry": 52}, gradient="identity", nb_iter=40),
        _e2e("square", {"lq-vae": 40, "madry": 51}, n_queries=1000),  # below 55 for lq-vae: masked
        _e2e("square", {"lq-vae": 70}, eps=0.3, n_queries=1000),  # no gradient row at 0.3: no check
    ]
    (line,) = attack_checks(rows)
    assert line.startswith("**FLAG** Square") and "lq-vae 40.00 < 55.00" in line and "madry" not in line
    assert "beyond its 95% interval: gradients are masked there" in line  # 55's interval starts at 45.2
    table = markdown(rows)
    assert "### Checks of the attacks" in table and "**FLAG** step" not in table


def test_square_a_hair_below_the_gradient_rows_is_flagged_as_within_their_interval_with_its_own_images():
    from lqvae_tf.evaluation.report import attack_checks

    rows = [
        _e2e("pgd", {"madry": 89}, nb_iter=40),
        _e2e("pgd", {"madry": 90}, gradient="identity", nb_iter=40),
        _e2e("square", {"madry": 88}, n_queries=1000),
    ]
    # Per image (True: still right): Square fools images 0-11; the gradient rows 8-18 and 10-19.
    right = np.ones(100, bool)
    rows[0].outcomes["madry"], rows[1].outcomes["madry"], rows[2].outcomes["madry"] = (
        np.where(np.isin(np.arange(100), np.arange(8, 19)), False, right),
        np.where(np.isin(np.arange(100), np.arange(10, 20)), False, right),
        np.where(np.arange(100) < 12, False, right),
    )
    (line,) = attack_checks(rows)
    assert line.startswith("**FLAG** Square") and "madry 88.00 < 89.00, within its 95% interval" in line
    assert "masked" not in line and "8 of 100 images fooled by Square alone" in line


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "celeb_a"])
def test_the_studies_run_the_checks_at_each_eps_on_a_valid_spec(dataset):
    from lqvae_tf.attacks import make_attack
    from lqvae_tf.evaluation.suite import AttackSpec
    from lqvae_tf.study.config import study_config

    parsed = [AttackSpec.parse(spec) for spec in study_config(dataset).attacks]
    end_to_end = [p for p in parsed if p.setting == "end-to-end" and p.attack in ("pgd", "square")]
    checks = [p for p in end_to_end if p.attack == "square" or dict(p.params)["nb_iter"] == 80]
    found = {(p.attack, dict(p.params)["eps"]): p for p in checks}
    assert set(found) == {("pgd", 0.1), ("pgd", 0.3), ("square", 0.1), ("square", 0.3)}
    for (attack, eps), spec in found.items():
        assert spec.how == "bpda" and spec.on == ("A",)
        make_attack(attack, **dict(spec.params))  # valid parameters for the attack
        if attack == "pgd":  # step doubling: the 40-step rows at the same eps take the same step
            checked = [p for p in end_to_end if p.attack == "pgd" and p is not spec and dict(p.params)["eps"] == eps]
            assert checked and {dict(p.params)["nb_iter"] for p in checked} == {40}
            assert {dict(p.params)["eps_iter"] for p in checked} == {dict(spec.params)["eps_iter"]}
    assert dict(found["pgd", 0.1].params)["nb_iter"] == 80 and found["pgd", 0.1].restarts == 2
    assert dict(found["square", 0.3].params)["n_queries"] >= 1000


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "celeb_a"])
def test_every_study_steps_its_adaptive_pgd_a_quarter_of_eps(dataset):
    # Smaller steps left 40 steps short of 80's (bench/adaptive_step.py); CelebA also runs its
    # white-box PGD at that step beside the paper's.
    from lqvae_tf.evaluation.suite import AttackSpec
    from lqvae_tf.study.config import study_config

    parsed = [AttackSpec.parse(spec) for spec in study_config(dataset).attacks]
    white = [p for p in parsed if p.setting == "white-box" and p.attack == "pgd"]
    assert [p.variant for p in white] == (["", "eps_iter=0.075"] if dataset == "celeb_a" else [])
    # The no-masking floor reads the white-box PGD rows: measured as issue 27 measures floors, 2 restarts.
    assert [p.restarts for p in white] == ([1, 2] if dataset == "celeb_a" else [])
    bim = [p.variant for p in parsed if p.setting == "white-box" and p.attack == "bim"]
    assert bim == (["", "eps_iter=0.075"] if dataset == "celeb_a" else [])  # the same walk, from the image
    adaptive = [dict(p.params) for p in parsed if p.setting == "end-to-end" and p.attack == "pgd"]
    assert {params["eps"] for params in adaptive} == {0.1, 0.3}
    assert all(params["eps_iter"] == params["eps"] / 4 for params in adaptive)


def test_a_row_whose_spec_set_the_attack_parameters_is_named_so_and_gets_no_papers_number():
    from lqvae_tf.evaluation.harness import Row
    from lqvae_tf.evaluation.paper import reference
    from lqvae_tf.evaluation.report import markdown

    def pgd(variant, step):
        row = Row("white-box", "pgd", {"eps": 0.3, "eps_iter": step}, "A", "A", Accuracy(96, 100), Accuracy(3, 100), {})
        row.variant = variant
        return row

    restarted = pgd("eps_iter=0.075", 0.075)
    restarted.params = {**restarted.params, "restarts": 2}  # as the harness records a spec's restarts
    table = markdown([pgd("", 0.01), pgd("eps_iter=0.075", 0.075), restarted], reference("celeb_a"))
    lines = table.splitlines()
    papers = [line for line in lines if line.startswith("| paper |")]
    assert len(papers) == 1 and lines[lines.index(papers[0]) - 1].startswith("| pgd | A |")
    assert any(line.startswith("| pgd[eps_iter=0.075] | A |") for line in lines)
    assert any(line.startswith("| pgd[eps_iter=0.075,restarts=2] | A |") for line in lines)  # its restarts named


def test_the_per_image_worst_counts_an_image_only_if_it_survived_every_backward_pass():
    from lqvae_tf.evaluation.harness import NO_DEFENSE
    from lqvae_tf.evaluation.report import end_to_end_label
    from lqvae_tf.evaluation.worst import per_image_worst
    from lqvae_tf.study.floors import check_floors

    def row(gradient, filtered, flips, eps=0.1, eot=1):
        madry = np.array([True, False, True, True])  # the robust classifier is attacked alone: the same
        outcomes = {NO_DEFENSE: np.zeros(4, bool), "lq-vae": np.array(filtered), "madry": madry}
        made = _e2e("pgd", {"lq-vae": sum(filtered), "madry": 3}, eps=eps, gradient=gradient, nb_iter=40)
        made.params["eot_samples"] = eot
        made.outcomes, made.flips = outcomes, {"lq-vae": np.array(flips)}
        # Each image's perturbation L2 and L-inf through the filter: 10 x the flips, to tell them apart.
        made.sizes = {"lq-vae": np.stack([10 * np.array(flips), np.full(4, eps)], axis=1)}
        made.column_distortion = {"lq-vae": {"mean_l2": 10 * float(np.mean(flips)), "mean_linf": eps}}
        made.no_attack = made.no_defense = Accuracy(0, 4)
        made.defended = {c: Accuracy.of_outcomes(v) for c, v in outcomes.items() if c != NO_DEFENSE}
        return made

    rows = [
        row("bpda", [True, True, False, True], [0.1, 0.1, 0.1, 0.1]),
        row("soft", [True, False, True, True], [0.2, 0.2, 0.2, 0.2], eot=2),
        row("identity", [True, True, False, False], [0.3, 0.3, 0.3, 0.3]),
        row("naive", [False, False, False, False], [0.4] * 4),  # masked: not one of the three
        row("bpda", [True, True, True, True], [0.5] * 4, eps=0.3),  # alone at its eps: nothing to combine
    ]
    ((index, worst),) = per_image_worst(rows)
    assert index == 3  # right after the last row it combines
    # Each single row leaves the filter 2 or 3 of 4; per image, only the first survived all three.
    assert worst.defended["lq-vae"].correct == 1 and min(r.defended["lq-vae"].correct for r in rows[:3]) == 2
    assert worst.defended["madry"].correct == 3 and worst.no_defense.correct == 0
    # The flips of the adversarial that fooled each image first (bpda's where none did).
    assert worst.bit_flips["lq-vae"] == pytest.approx(100 * (0.1 + 0.2 + 0.1 + 0.3) / 4)
    # And the size of those same adversarials.
    assert worst.column_distortion["lq-vae"]["mean_l2"] == pytest.approx(10 * (0.1 + 0.2 + 0.1 + 0.3) / 4)
    assert worst.seconds == 0.0 and worst.params["worst_of"] == [["bpda", 1], ["soft", 2], ["identity", 1]]
    assert end_to_end_label(worst) == (
        "adaptive: per-image worst of BPDA / soft-path BPDA+EOT x2 / identity-BPDA, pgd eps 0.1, 40 steps x 2 restarts"
    )
    assert "worst_of" in worst.to_dict()["params"] and json.dumps(worst.to_dict())
    # A robust floor counts the attacks, not the row made of them.
    floor = {"kind": "robust", "column": "madry", "classifier": "A", "eps": 0.1, "at_least": 50.0}
    dicts = [r.to_dict() for r in [*rows[:3], worst]]
    assert "worst of 3 PGD rows" in check_floors((floor,), dicts)[0]["text"]
