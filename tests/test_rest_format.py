"""TF Serving's REST formats: the fast path for nested lists of numbers agrees with numpy's and
refuses what numpy's would (ragged lists, strings, booleans, wrong depths)."""

import numpy as np
import orjson
import pytest

from lqvae_tf.serving.rest_format import RequestError, parse_predict, to_array

SPECS = {"images": (np.dtype(np.float32), (None, 28, 28, 1))}


@pytest.mark.parametrize("batch", [1, 3])
def test_nested_lists_become_the_same_float32_array_as_numpy_makes(batch):
    images = np.random.default_rng(batch).random((batch, 28, 28, 1), dtype=np.float32)
    body = orjson.loads(orjson.dumps({"inputs": images}, option=orjson.OPT_SERIALIZE_NUMPY))
    arrays, row_format = parse_predict(body, SPECS)
    assert not row_format and arrays["images"].dtype == np.float32
    np.testing.assert_array_equal(arrays["images"], np.asarray(body["inputs"]).astype(np.float32))
    np.testing.assert_array_equal(arrays["images"], images)


def test_integers_and_floats_mix_and_huge_values_become_inf():
    array = to_array([[1, 2.5], [3, 1e300]], "x", np.dtype(np.float32), (None, 2))
    assert array.dtype == np.float32 and array.shape == (2, 2)
    assert array[0].tolist() == [1.0, 2.5] and np.isinf(array[1, 1])


@pytest.mark.parametrize(
    "value, message",
    [
        ([[1.0, 2.0], [3.0]], "regular (non-ragged)"),  # ragged
        ([[1.0, 2.0], [3.0, 4.0, 5.0], [6.0]], "regular (non-ragged)"),  # ragged with a plausible total
        ([["0.5", 1.0], [1.0, 1.0]], "must hold numbers"),  # a string where numpy would parse it
        ([[True, 0.5], [1.0, 1.0]], "must hold numbers"),  # a boolean where numpy would make it 1.0
        ([[None, 0.5], [1.0, 1.0]], "must hold numbers"),
        ([[1.0, [2.0]], [1.0, 1.0]], "must hold numbers"),  # one level too deep in one place
        ([[1.0, 2.0], "ab"], "must hold numbers"),  # a string of the row's length where a row should be
        ([[1.0, 2.0], {"a": 1, "b": 2}], "must hold numbers"),
        ([[1.0, 2.0], 3.0], "regular (non-ragged)"),  # a number where a row should be
        ([1.0, 2.0], "has shape (2,); the signature takes (-1, 2)"),  # one level too shallow
        ([[1.0, 2.0, 3.0]], "has shape (1, 3); the signature takes (-1, 2)"),
    ],
)
def test_what_is_not_a_regular_array_of_numbers_is_refused_with_the_reason(value, message):
    with pytest.raises(RequestError) as error:
        to_array(value, "x", np.dtype(np.float32), (None, 2))
    assert message in str(error.value)
