"""Fuzzing the embedded server from its own /openapi.json (schemathesis): no input gets a 5xx."""

import keras
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from lqvae_tf import LQVAE
from lqvae_tf.serving import export_purifier
from lqvae_tf.serving.batching import BatchingParameters
from lqvae_tf.serving.server import running_server

from conftest import tiny_config


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    keras.utils.set_random_seed(1)
    base = tmp_path_factory.mktemp("models")
    export_purifier(LQVAE(tiny_config()), str(base), "lqvae", warmup=False)
    with running_server(str(base / "lqvae"), "lqvae", batching=BatchingParameters(batch_timeout_micros=0)) as url:
        yield url


def test_no_generated_request_gets_a_server_error(server_url):
    # schemathesis's pytest integration (from_fixture) does not run under pytest 9, so each
    # operation's hypothesis strategy is driven here directly.
    schema = schemathesis.openapi.from_url(f"{server_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 9

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case):
            response = case.call(base_url=server_url)
            case.validate_response(response, checks=[not_a_server_error])
            assert response.status_code < 500, (case.path, response.text)
            if response.status_code >= 400 and case.method.upper() != "HEAD":
                assert "error" in response.json()

        check()


def test_the_server_keeps_serving_after_the_fuzzing(server_url):
    body = {"instances": [[[[0.0]] * 28] * 28]}
    assert requests.post(f"{server_url}/v1/models/lqvae:predict", json=body).status_code == 200
