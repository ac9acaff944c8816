"""The attacks: one interface, parameters recorded, and each one really fools a real classifier.

A small CNN is trained for a few seconds on 2000 real Fashion-MNIST test images; every attack is
run once on 100 other images and must cut its accuracy clearly while staying in the pixel range
(and, for the norm-bounded ones, within eps).
"""

from __future__ import annotations

import functools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from cleverhans.tf2.attacks import carlini_wagner_l2 as cleverhans_cw
from cleverhans.tf2.attacks import spsa as cleverhans_spsa

from lqvae_tf.attacks import ATTACKS, Attack, logits_of, make_attack
from lqvae_tf.attacks.cleverhans_compat import CarliniWagnerAdam, CarliniWagnerL2, spsa
from lqvae_tf.attacks.deepfool import deepfool

TRAIN, HELD_OUT = slice(0, 2000), slice(5000, 5100)

# Fewer steps than the defaults where the defaults would take minutes on two CPU cores; the
# accuracy drop each must reach stays the same.
TEST_PARAMS = {
    "spsa": dict(nb_iter=20, spsa_samples=64),
    "square": dict(n_queries=300),
    "cw_l2": dict(binary_search_steps=5, max_iterations=200, learning_rate=0.05),
}
L_INF_BOUNDED = ("fgsm", "bim", "pgd", "mim", "spsa", "square")
L2_BOUNDED = ("pgd_l2",)
MIN_ACCURACY_DROP = 0.3
# What each leaves of the clean accuracy (about 0.75), with room above what they reach
# (0 for all but pgd_l2, 0.1, and spsa at its test settings, 0.25).
MAX_ACCURACY_LEFT = dict(
    fgsm=0.1,
    bim=0.05,
    pgd=0.05,
    mim=0.05,
    cw=0.05,
    cw_l2=0.05,
    deepfool=0.05,
    pgd_l2=0.2,
    spsa=0.4,
    authors_fgsm=0.4,
    square=0.4,
)


@pytest.fixture(scope="module")
def held_out(fmnist_test_arrays) -> tuple[np.ndarray, np.ndarray]:
    images, labels = fmnist_test_arrays
    return images[HELD_OUT].astype(np.float32) / 255.0, labels[HELD_OUT]


@pytest.fixture(scope="module")
def classifier(fmnist_test_arrays) -> keras.Model:
    """A small CNN ending in a softmax (so `logits_of` has one to strip), trained for seconds."""
    images, labels = fmnist_test_arrays
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(images[TRAIN].astype(np.float32) / 255.0, labels[TRAIN], epochs=4, batch_size=64, verbose=0)
    return model


def accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(model.predict(images, verbose=0), axis=-1) == labels))


@pytest.fixture(scope="module")
def adversarial(classifier, held_out):
    """`adversarial(name)`: the held-out images attacked by `name`, computed once per module."""
    x, y = held_out
    model_fn = logits_of(classifier)

    @functools.cache
    def attack(name: str) -> np.ndarray:
        keras.utils.set_random_seed(1)
        return make_attack(name, **TEST_PARAMS.get(name, {}))(model_fn, x, y)

    return attack


# ---------------------------------------------------------------------------------- registry
def test_registry_lists_every_attack_with_json_defaults():
    assert set(ATTACKS) == {
        "fgsm",
        "bim",
        "pgd",
        "pgd_l2",
        "mim",
        "cw",
        "cw_l2",
        "spsa",
        "deepfool",
        "authors_fgsm",
        "square",
    }
    json.dumps(ATTACKS, allow_nan=False)  # strict JSON: no Infinity for an L-inf norm


def test_params_record_every_parameter_and_rebuild_the_attack():
    attack = make_attack("pgd", eps=0.1, nb_iter=7)
    assert attack.params == {**ATTACKS["pgd"], "eps": 0.1, "nb_iter": 7}
    assert ATTACKS["pgd"]["eps"] == 0.3  # defaults untouched
    written = json.loads(json.dumps({"attack": attack.name, "params": attack.params}, allow_nan=False))
    assert make_attack(written["attack"], **written["params"]) == attack
    assert Attack("pgd", {"eps": 0.1, "nb_iter": 7}) == attack


def test_norm_given_as_np_inf_is_recorded_as_inf():
    assert make_attack("fgsm", norm=np.inf).params["norm"] == "inf"
    assert make_attack("fgsm", norm=2.0).params["norm"] == 2
    assert type(make_attack("mim", norm=np.int64(2)).params["norm"]) is int


def test_unknown_attack_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"'fgsn'.*known attacks: \[.*'fgsm'"):
        make_attack("fgsn")


def test_unknown_parameter_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"'pgd' has no parameter epsilon; its parameters: \[.*'eps'"):
        make_attack("pgd", epsilon=0.1)


@pytest.mark.parametrize(
    "name, params, named",
    [
        ("fgsm", dict(eps=-0.1), "eps"),
        ("fgsm", dict(eps="0.3"), "eps"),
        ("fgsm", dict(clip_min=1.0, clip_max=0.0), "clip_min"),
        ("pgd", dict(eps_iter=0.5), "eps_iter"),
        ("pgd", dict(nb_iter=2.5), "nb_iter"),
        ("pgd", dict(nb_iter=float("inf")), "nb_iter"),
        ("fgsm", dict(norm=3), "norm"),
        ("mim", dict(norm=1), "norm"),
        ("mim", dict(eps=float("nan")), "eps"),
        ("cw", dict(binary_search_steps=5), "binary_search_steps"),
        ("cw", dict(abort_early=1), "abort_early"),
        ("spsa", dict(spsa_samples=3), "spsa_samples"),
        ("deepfool", dict(overshoot=0.0), "overshoot"),
        ("deepfool", dict(nb_candidate=1), "nb_candidate"),
    ],
)
def test_bad_parameter_values_are_rejected_by_name(name, params, named):
    with pytest.raises(ValueError, match=rf"attack '{name}'.*{named}"):
        make_attack(name, **params)


def test_call_rejects_images_outside_the_clip_range_and_mismatched_labels(classifier, held_out):
    x, y = held_out
    attack, model_fn = make_attack("fgsm"), logits_of(classifier)
    with pytest.raises(ValueError, match="outside"):
        attack(model_fn, x * 2.0 + 0.5, y)
    with pytest.raises(ValueError, match="integer dtype uint8"):
        attack(model_fn, (x * 255).astype(np.uint8), y)
    with pytest.raises(ValueError, match="labels"):
        attack(model_fn, x, y[:-1])


# ---------------------------------------------------------------------------------- logits_of
def test_logits_of_strips_a_final_softmax_and_shares_its_weights(classifier, held_out):
    x = tf.constant(held_out[0][:8])
    logits = logits_of(classifier)(x)
    np.testing.assert_allclose(tf.nn.softmax(logits), classifier(x), rtol=1e-5, atol=1e-6)
    assert float(tf.reduce_max(tf.abs(logits - classifier(x)))) > 1.0  # not probabilities
    dense = classifier.layers[-1]
    bias = dense.bias.numpy()
    dense.bias.assign(bias + 1.0)  # a shift that the softmax hides but the logits show
    try:
        np.testing.assert_allclose(logits_of(classifier)(x), logits + 1.0, rtol=1e-5, atol=1e-5)
    finally:
        dense.bias.assign(bias)


def test_logits_of_strips_a_softmax_activation_layer_and_keeps_logit_models_as_they_are():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3)(inputs)
    logit_model = keras.Model(inputs, hidden)
    softmax_model = keras.Model(inputs, keras.layers.Activation("softmax")(hidden))
    x = tf.random.normal((5, 4))
    np.testing.assert_allclose(logits_of(softmax_model)(x), logit_model(x), rtol=1e-6)
    np.testing.assert_allclose(logits_of(logit_model)(x), logit_model(x), rtol=1e-6)


# ---------------------------------------------------------------------------------- every attack
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_lowers_accuracy_clearly(name, classifier, held_out, adversarial):
    x, y = held_out
    clean, attacked = accuracy(classifier, x, y), accuracy(classifier, adversarial(name), y)
    assert clean > 0.65
    assert clean - attacked >= MIN_ACCURACY_DROP, f"{name}: accuracy {clean:.2f} -> {attacked:.2f}"
    assert attacked <= MAX_ACCURACY_LEFT[name], f"{name}: accuracy {clean:.2f} -> {attacked:.2f}"


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_returns_images_in_the_clip_range(name, held_out, adversarial):
    x_adv = adversarial(name)
    params = make_attack(name).params
    assert x_adv.shape == held_out[0].shape and x_adv.dtype == np.float32
    assert params["clip_min"] <= x_adv.min() and x_adv.max() <= params["clip_max"]


@pytest.mark.parametrize("name", L_INF_BOUNDED + L2_BOUNDED)
def test_norm_bounded_attack_stays_within_eps(name, held_out, adversarial):
    params = make_attack(name, **TEST_PARAMS.get(name, {})).params
    perturbation = (adversarial(name) - held_out[0]).reshape(len(held_out[0]), -1)
    order = np.inf if name in L_INF_BOUNDED else 2
    norms = np.linalg.norm(perturbation, ord=order, axis=1)
    assert norms.max() <= params["eps"] * (1 + 1e-5)
    assert np.median(norms) > 0.5 * params["eps"]  # and it did use its budget


# ---------------------------------------------------------------------------------- CleverHans on Keras 3
def test_cleverhans_4_cw_and_spsa_still_fail_on_keras_3_without_the_compat_module():
    # When this fails, CleverHans has been fixed and cleverhans_compat can go.
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    x = np.full((2, 4, 4, 1), 0.5, np.float32)
    with pytest.raises(TypeError, match="not callable"):
        cleverhans_cw.carlini_wagner_l2(model, x, max_iterations=1)
    with pytest.raises(ValueError, match="lr"):
        cleverhans_spsa.spsa(model, tf.constant(x[:1]), tf.constant([0]), eps=0.1, nb_iter=1)


def test_cw_restart_of_adam_zeroes_its_state_but_not_its_learning_rate():
    optimizer = CarliniWagnerAdam(10.0)
    variable = tf.Variable(tf.ones((2,)))
    optimizer.apply_gradients([(tf.ones((2,)), variable)])
    for state in optimizer.variables():  # what CleverHans does before each binary-search step
        state.assign(tf.zeros_like(state))
    assert float(optimizer.learning_rate) == 10.0
    assert int(optimizer.iterations) == 0
    optimizer.apply_gradients([(tf.ones((2,)), variable)])
    np.testing.assert_allclose(variable.numpy(), 1.0 - 2 * 10.0, rtol=1e-4)  # Adam's first step: lr


def test_cw_runs_on_three_channel_images_in_batches_with_their_labels():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    x = np.random.default_rng(0).uniform(0.2, 0.8, (5, 6, 6, 3)).astype(np.float32)
    y = np.argmax(model(x), -1)
    x_adv = make_attack("cw", batch_size=2, max_iterations=20)(model, x, y)
    assert x_adv.shape == x.shape
    assert (np.argmax(model(x_adv), -1) != y).all()


def test_cw_weighs_each_image_by_one_constant():
    constants = []

    class RecordingCarliniWagnerL2(CarliniWagnerL2):
        def gradient(self, x, y, modifier, const):
            constants.append(const)
            return super().gradient(x, y, modifier, const)

    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    x = np.full((5, 4, 4, 1), 0.5, np.float32)
    RecordingCarliniWagnerL2(model, max_iterations=2, initial_const=7.0).attack(x)
    assert constants and all(c.shape == (5,) for c in constants)  # not CleverHans's (5, 4, 4, 1)
    np.testing.assert_allclose(constants[0], 7.0)


def test_spsa_runs_inside_tf_function(classifier, held_out):
    model_fn = logits_of(classifier)
    x, y = (tf.constant(a[:1]) for a in held_out)
    x_adv = tf.function(
        lambda x, y: spsa(model_fn, x, y, eps=0.1, nb_iter=2, spsa_samples=8, clip_min=0.0, clip_max=1.0)
    )(x, y)
    assert float(tf.reduce_max(tf.abs(x_adv - x))) <= 0.1 + 1e-6


# ---------------------------------------------------------------------------------- DeepFool
@pytest.mark.parametrize("classes", [2, 10])
def test_deepfool_on_an_affine_classifier_takes_the_closed_form_minimal_step(classes, held_out):
    # f(x) = W x + b: the nearest boundary between the predicted class p and a class k is at
    # distance |f_k - f_p| / ||w_k - w_p||, reached by r = |f_k - f_p| / ||w_k - w_p||^2 (w_k - w_p).
    keras.utils.set_random_seed(classes)
    dense = keras.layers.Dense(classes, bias_initializer="random_normal")
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), dense])
    x = held_out[0][:20]
    overshoot = 0.02
    x_adv = make_attack("deepfool", overshoot=overshoot, clip_min=-100.0, clip_max=100.0)(
        model, x, np.argmax(model(x), -1)
    )

    w, b = (np.asarray(v, np.float64) for v in dense.weights)
    flat = x.reshape(len(x), -1).astype(np.float64)
    f = flat @ w + b
    for image, f_image, perturbation in zip(flat, f, (x_adv - x).reshape(len(x), -1)):
        p = np.argmax(f_image)
        others = [k for k in range(classes) if k != p]
        w_diff = w[:, others] - w[:, [p]]
        distance = np.abs(f_image[others] - f_image[p]) / np.linalg.norm(w_diff, axis=0)
        k = int(np.argmin(distance))
        expected = (1 + overshoot) * distance[k] / np.linalg.norm(w_diff[:, k]) * w_diff[:, k]
        np.testing.assert_allclose(perturbation, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
        assert np.argmax((image + perturbation) @ w + b) != p


def test_deepfool_leaves_misclassified_images_alone_and_stops_each_image_at_its_flip(classifier, held_out, adversarial):
    x, y = held_out
    x_adv = adversarial("deepfool")
    predicted, predicted_adv = (np.argmax(classifier.predict(a, verbose=0), -1) for a in (x, x_adv))
    wrong = predicted != y
    np.testing.assert_array_equal(x_adv[wrong], x[wrong])
    assert (predicted_adv[~wrong] != y[~wrong]).mean() >= 0.95
    # Stopping at the flip: the way back halved still has the true label, for almost all.
    halfway = x[~wrong] + 0.5 * (x_adv[~wrong] - x[~wrong])
    assert np.mean(np.argmax(classifier.predict(halfway, verbose=0), -1) == y[~wrong]) >= 0.9


def test_deepfool_with_no_labels_moves_away_from_the_predictions(classifier, held_out):
    model_fn = logits_of(classifier)
    x = tf.constant(held_out[0][:16])
    x_adv = deepfool(model_fn, x)
    assert np.mean(np.argmax(model_fn(x_adv), -1) != np.argmax(model_fn(x), -1)) >= 0.95


def test_one_step_attacks_watch_the_images_not_the_weights(monkeypatch):
    """A tape that also watches the weights records every step of a defense's inner search
    (Defense-GAN's 200 x 10 generator descent per image) and ran the MNIST study out of memory
    at 21 GB: the authors' FGSM and the substitutes' Jacobian step watch x only."""
    from lqvae_tf.attacks.substitute import jacobian_augmentation

    tapes = []

    class RecordingTape(tf.GradientTape):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            tapes.append(self)

    monkeypatch.setattr(tf, "GradientTape", RecordingTape)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    x = np.random.default_rng(0).uniform(0, 1, (2, 4, 4, 1)).astype(np.float32)
    y = np.array([0, 1])
    make_attack("authors_fgsm")(model, x, y)
    jacobian_augmentation(model, x, y, step=0.1)
    assert len(tapes) == 2
    assert [tape.watched_variables() for tape in tapes] == [(), ()]


def test_jacobian_augmentation_in_chunks_equals_one_pass_and_bounds_the_batch():
    """The substitutes' augmentation runs `batch_size` images per gradient (one pass over the
    2,400 CelebA faces of round 5 ran out of memory), with the same result as one pass."""
    from lqvae_tf.attacks.substitute import jacobian_augmentation

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    seen = []
    original = model.call

    def recording_call(inputs, *args, **kwargs):
        seen.append(int(inputs.shape[0]))
        return original(inputs, *args, **kwargs)

    model.call = recording_call
    x = np.random.default_rng(0).uniform(0, 1, (10, 4, 4, 1)).astype(np.float32)
    y = np.arange(10) % 3
    whole = jacobian_augmentation(model, x, y, step=0.1, batch_size=10)
    seen.clear()
    chunked = jacobian_augmentation(model, x, y, step=0.1, batch_size=4)
    assert seen == [4, 4, 2]
    np.testing.assert_array_equal(chunked, whole)
    assert not np.array_equal(whole, x) and whole.min() >= 0.0 and whole.max() <= 1.0


def test_standard_cw_l2_finds_much_smaller_perturbations_than_defense_gans_cw(classifier, held_out, adversarial):
    """Defense-GAN's CW settings draw new images; the binary search finds the minimal perturbation."""
    x, y = held_out
    mean_l2 = {
        name: float(np.linalg.norm((adversarial(name) - x).reshape(len(x), -1), axis=1).mean())
        for name in ("cw", "cw_l2")
    }
    assert mean_l2["cw_l2"] < 0.5 * mean_l2["cw"], mean_l2
    # More rounds of the search only ever keep an adversarial at least as close, image by image.
    one_round = make_attack("cw_l2", **{**TEST_PARAMS["cw_l2"], "binary_search_steps": 1})(logits_of(classifier), x, y)
    closest = adversarial("cw_l2")
    fooled = np.argmax(classifier.predict(one_round, verbose=0), -1) != y
    l2 = lambda a: np.linalg.norm((a - x).reshape(len(x), -1), axis=1)  # noqa: E731
    assert fooled.any() and np.all(l2(closest)[fooled] <= l2(one_round)[fooled] + 1e-4)


def test_cw_l2_returns_an_image_it_cannot_fool_unchanged(held_out):
    x = held_out[0][:4]
    constant = lambda images: tf.tile(tf.constant([[5.0] + [0.0] * 9]), [tf.shape(images)[0], 1])  # noqa: E731
    x_adv = make_attack("cw_l2", binary_search_steps=2, max_iterations=10)(constant, x, np.zeros(4, np.int64))
    np.testing.assert_array_equal(x_adv, x)


@pytest.mark.parametrize("bad", [dict(binary_search_steps=0), dict(learning_rate=0.0), dict(confidence=-1.0)])
def test_cw_l2_refuses_impossible_settings(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        make_attack("cw_l2", **bad)
