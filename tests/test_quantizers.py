import keras
import numpy as np
import pytest
import tensorflow as tf

from lqvae_tf.models import HardQuantizer, SoftQuantizer
from lqvae_tf.models.quantizers import level_thresholds

Z = np.linspace(-2.0, 2.0, 4001, dtype=np.float32)[None, :]


@pytest.mark.parametrize(
    "quantizer, bits, symbols",
    [
        ("band", 1, {-1.0, 1.0}),
        ("levels", 1, {-1.0, 1.0}),
        ("levels", 2, {-1.0, -1 / 3, 1 / 3, 1.0}),
    ],
)
def test_hard_quantizer_outputs_only_code_symbols(quantizer, bits, symbols):
    codes = HardQuantizer(quantizer, 0.1, bits, 1.0)(Z).numpy()
    assert np.allclose(sorted(set(np.round(codes.ravel(), 6))), sorted(symbols), atol=1e-6)


def test_band_quantizer_is_sign_of_t2_minus_z2():
    codes = HardQuantizer("band", 0.1)(Z).numpy()
    np.testing.assert_array_equal(codes, np.where(Z**2 < 0.01, 1.0, -1.0))


def test_one_bit_levels_quantizer_is_z_greater_than_zero():
    codes = HardQuantizer("levels", bits_per_unit=1)(Z).numpy()
    np.testing.assert_array_equal(codes, np.where(Z > 0, 1.0, -1.0))


@pytest.mark.parametrize(
    "quantizer, bits, form",
    [
        ("band", 1, "softsign"),
        ("band", 1, "tanh"),
        ("levels", 2, "softsign"),
        ("levels", 3, "tanh"),
    ],
)
def test_soft_quantizer_approaches_hard_one_as_it_sharpens(quantizer, bits, form):
    hard = HardQuantizer(quantizer, 0.1, bits, 1.0)(Z).numpy()
    thresholds = [0.1, -0.1] if quantizer == "band" else level_thresholds(bits, 1.0)
    away = np.min([np.abs(Z - c) for c in thresholds], axis=0) > 0.02  # off the decision points
    errors = []
    for sharpness in (10.0, 100.0, 1_000.0, 10_000.0):
        soft = SoftQuantizer(quantizer, 0.1, bits, 1.0, form=form, sharpness=sharpness)(Z).numpy()
        errors.append(np.abs(soft - hard)[away].max())
    assert all(a >= b for a, b in zip(errors, errors[1:])) and errors[0] > errors[-1], errors
    assert errors[-1] < 0.05


def test_gradients_flow_through_soft_quantizer_not_hard_one():
    z = tf.Variable(np.array([[0.05, -0.08, 0.3, 0.12]], dtype=np.float32))
    with tf.GradientTape(persistent=True) as tape:
        soft = tf.reduce_sum(SoftQuantizer("band", 0.1, sharpness=500.0)(z))
        hard = tf.reduce_sum(HardQuantizer("band", 0.1)(z))
    soft_gradient = tape.gradient(soft, z)
    hard_gradient = tape.gradient(hard, z)
    assert soft_gradient is not None and np.abs(soft_gradient.numpy()).min() > 0
    assert hard_gradient is None or not np.any(hard_gradient.numpy())


def test_quantizer_layers_round_trip_their_config():
    for layer in (
        HardQuantizer("levels", 0.2, 2, 1.5),
        SoftQuantizer("band", 0.1, form="tanh", sharpness=50.0),
    ):
        restored = keras.layers.deserialize(keras.layers.serialize(layer))
        assert type(restored) is type(layer)
        assert restored.get_config() == layer.get_config()
        np.testing.assert_allclose(restored(Z).numpy(), layer(Z).numpy())
