"""The embedded server over real HTTP: TF Serving's REST API, errors, hot reload, concurrency."""

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import pytest
import requests
import tensorflow as tf

from lqvae_tf import LQVAE
from lqvae_tf.serving import RestClient, ServingError, export_purifier
from lqvae_tf.serving.batching import BatchingParameters
from lqvae_tf.serving.limits import ServingLimits
from lqvae_tf.serving.server import ServingApp, build_registry, running_server

from conftest import tiny_config


def _model(seed):
    keras.utils.set_random_seed(seed)
    return LQVAE(tiny_config())


@pytest.fixture(scope="module")
def purifier():
    return _model(1)


@pytest.fixture(scope="module")
def served(tmp_path_factory, purifier):
    """A running server over version 1 of `purifier`; yields (url, model folder)."""
    base = tmp_path_factory.mktemp("models")
    export_purifier(purifier, str(base), "lqvae", warmup=False)
    with running_server(str(base / "lqvae"), "lqvae", limits=ServingLimits(max_body_bytes=150_000)) as url:
        yield url, base


def test_status_and_metadata_follow_tf_serving(served):
    url, _ = served
    status = requests.get(f"{url}/v1/models/lqvae").json()
    assert status == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    metadata = requests.get(f"{url}/v1/models/lqvae/versions/1/metadata").json()
    assert metadata["model_spec"] == {"name": "lqvae", "signature_name": "", "version": "1"}
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["images"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in signature["inputs"]["images"]["tensor_shape"]["dim"]] == [
        "-1",
        "28",
        "28",
        "1",
    ]
    assert signature["method_name"] == "tensorflow/serving/predict"


def test_rest_round_trip_equals_in_process_purify(served, purifier, fmnist_images):
    url, _ = served
    x = fmnist_images[:6]
    want = purifier.purify(x)
    client = RestClient(url, "lqvae")
    np.testing.assert_allclose(client.predict(x, columnar=True), want, atol=1e-5)
    np.testing.assert_allclose(client.predict(x, columnar=False), want, atol=1e-5)
    rows = requests.post(
        f"{url}/v1/models/lqvae:predict", json={"instances": [{"images": image.tolist()} for image in x]}
    ).json()
    np.testing.assert_allclose(np.array(rows["predictions"]), want, atol=1e-5)
    scored = client.predict(x, "purify_and_score", columnar=False)
    np.testing.assert_allclose(
        scored["reconstruction_error"], ((x - want) ** 2).mean(axis=(1, 2, 3)), rtol=1e-4, atol=1e-7
    )


def test_b64_png_inputs(served, purifier, fmnist_test_arrays):
    url, _ = served
    images = fmnist_test_arrays[0][:3]
    pngs = [tf.io.encode_png(image).numpy() for image in images]
    got = RestClient(url, "lqvae").predict_png(pngs)
    np.testing.assert_allclose(got, purifier.purify(images.astype(np.float32) / 255.0), atol=1e-5)
    columnar = requests.post(
        f"{url}/v1/models/lqvae:predict",
        json={
            "signature_name": "purify_png",
            "inputs": {"image_bytes": [{"b64": base64.b64encode(p).decode()} for p in pngs]},
        },
    ).json()
    np.testing.assert_allclose(np.array(columnar["outputs"]), got, atol=1e-6)


GOOD = {"instances": np.zeros((1, 28, 28, 1)).tolist()}


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        ("lqvae:predict", b"{not json", 400, "JSON Parse error"),
        ("lqvae:predict", {"instances": np.zeros((1, 28, 27, 1)).tolist()}, 400, "has shape (1, 28, 27, 1)"),
        ("lqvae:predict", {"instances": [[["a"] * 28] * 28]}, 400, "must hold numbers of dtype float32"),
        ("lqvae:predict", b'{"inputs": [[[[NaN]]]]}', 400, "JSON Parse error"),
        ("lqvae:predict", {"inputs": np.full((1, 28, 28, 1), 1e39).tolist()}, 400, "NaN or infinite"),
        ("lqvae:predict", {"inputs": np.full((1, 28, 28, 1), 7.0).tolist()}, 400, "above the value range"),
        ("lqvae:predict", {"inputs": np.zeros((1, 28, 28, 1)).tolist(), "instances": []}, 400, "exactly one"),
        ("lqvae:predict", {"signature_name": "nope", **GOOD}, 400, '"nope" not found'),
        ("lqvae:predict", {"instances": np.zeros((80, 28, 28, 1)).tolist()}, 413, "exceeds the limit"),
        ("other:predict", GOOD, 404, "Servable not found for request: Latest(other)"),
        ("lqvae/versions/9:predict", GOOD, 404, "Specific(lqvae, 9)"),
        ("lqvae/labels/canary:predict", GOOD, 404, "version label: canary"),
        ("lqvae:classify", GOOD, 400, "not supported"),
    ],
)
def test_bad_requests_get_a_json_error_and_the_server_keeps_serving(served, path, body, status, message):
    url, _ = served
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = requests.post(f"{url}/v1/models/{path}", data=data)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert requests.post(f"{url}/v1/models/lqvae:predict", json=GOOD).status_code == 200


def test_concurrent_clients_all_get_their_own_answer(served, purifier, fmnist_images):
    url, _ = served
    batches = [fmnist_images[i * 4 : (i + 1) * 4] for i in range(24)]
    want = [purifier.purify(b) for b in batches]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda b: RestClient(url, "lqvae").predict(b), batches))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)


def test_openapi_describes_the_routes_and_signatures(served):
    url, _ = served
    document = requests.get(f"{url}/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert "/v1/models/lqvae:predict" in document["paths"]
    assert "/v1/models/lqvae/versions/{version}/metadata" in document["paths"]
    assert document["info"]["x-signatures"]["serving_default"]["images"]["shape"] == [-1, 28, 28, 1]


def test_new_version_is_served_without_restart_and_without_failed_requests(tmp_path, fmnist_images):
    first, second = _model(1), _model(7)
    x = fmnist_images[:4]
    export_purifier(first, str(tmp_path), "lqvae", warmup=False)
    with running_server(str(tmp_path / "lqvae"), "lqvae", poll_seconds=0.1) as url:
        client = RestClient(url, "lqvae")
        np.testing.assert_allclose(client.predict(x), first.purify(x), atol=1e-5)
        failures, stop = [], threading.Event()

        def hammer():
            while not stop.is_set():
                try:
                    client_in_flight = RestClient(url, "lqvae")
                    client_in_flight.predict(x)
                except Exception as error:  # any failure during the reload fails the test
                    failures.append(error)

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        export_purifier(second, str(tmp_path), "lqvae", warmup=False)
        deadline = time.monotonic() + 60
        while client.status()["model_version_status"][0] != {
            "version": "2",
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }:
            assert time.monotonic() < deadline, "version 2 was never picked up"
            time.sleep(0.1)
        stop.set()
        for thread in threads:
            thread.join()
        assert failures == []
        np.testing.assert_allclose(client.predict(x), second.purify(x), atol=1e-5)
        with pytest.raises(ServingError, match="Specific"):  # "latest" policy: 1 is unloaded
            RestClient(url, "lqvae", version=1).predict(x)
        assert RestClient(url, "lqvae", version=1).status()["model_version_status"][0]["state"] == "END"


def test_all_versions_policy_and_labels(tmp_path, fmnist_images):
    first, second = _model(1), _model(7)
    x = fmnist_images[:2]
    for model in (first, second):
        export_purifier(model, str(tmp_path), "lqvae", warmup=False)
    with running_server(
        str(tmp_path / "lqvae"), "lqvae", version_policy="all", labels={"stable": 1, "canary": 2}
    ) as url:
        np.testing.assert_allclose(RestClient(url, "lqvae", version=1).predict(x), first.purify(x), atol=1e-5)
        np.testing.assert_allclose(RestClient(url, "lqvae", label="canary").predict(x), second.purify(x), atol=1e-5)
        assert RestClient(url, "lqvae", label="stable").status()["model_version_status"][0]["version"] == "1"
        versions = RestClient(url, "lqvae").status()["model_version_status"]
        assert [v["version"] for v in versions] == ["2", "1"]


def test_server_refuses_a_model_base_path_that_is_not_a_folder(tmp_path):
    with pytest.raises(ValueError, match="is not a folder"):
        with running_server(str(tmp_path / "missing"), "lqvae"):
            pass


def test_lqvae_serve_command_serves_on_loopback(served, purifier, fmnist_images):
    _, base = served
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lqvae_tf.cli.main",
            "serve",
            "--model_base_path",
            str(base / "lqvae"),
            "--model_name",
            "lqvae",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    try:
        client = RestClient(f"http://127.0.0.1:{port}", "lqvae", timeout_s=5)
        deadline = time.monotonic() + 120
        while True:
            try:
                client.status()
                break
            except requests.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline, "lqvae serve did not start"
                time.sleep(0.5)
        np.testing.assert_allclose(client.predict(fmnist_images[:2]), purifier.purify(fmnist_images[:2]), atol=1e-5)
    finally:
        process.terminate()
        process.wait(timeout=30)


DEEP = b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}"


@pytest.mark.parametrize(
    "method, path, body, status, message",
    [
        ("POST", "lqvae:predict", b'{"instances": [[[[' + b"9" * 5000 + b"]]]]}", 400, ""),
        ("POST", "lqvae:predict", {"signature_name": ["a"], **GOOD}, 400, "'signature_name' must be a string"),
        ("POST", "lqvae:predict", {"signature_name": {"a": 1}, **GOOD}, 400, "'signature_name' must be a string"),
        ("POST", "lqvae:predict", DEEP, 400, "JSON Parse error"),
        ("POST", "lqvae/versions/" + "9" * 5000 + ":predict", GOOD, 400, "Failed to convert version"),
        ("GET", "lqvae/versions/" + "9" * 5000, None, 400, "Failed to convert version"),
        ("POST", "lqvae:predict", {"instances": np.zeros((1, 28, 28, 1)).astype(str).tolist()}, 400, "numbers"),
        ("POST", "lqvae:predict", {"instances": np.zeros((1, 28, 28, 1), bool).tolist()}, 400, "numbers"),
        ("POST", "lqvae:predict", {"instances": [1, [2]]}, 400, "numbers"),
        ("POST", "lqvae:predict", [1, 2], 400, "JSON object"),
        ("GET", "lqvae:predict", None, 400, "Malformed request: GET"),
        ("DELETE", "lqvae", None, 400, "Malformed request: DELETE"),
        ("POST", "lqvae/metadata", GOOD, 400, "Malformed request"),
        ("POST", "lqvae:explode", GOOD, 400, "Malformed request"),
        ("GET", "lqvae/versions/x", None, 400, "Malformed request"),
        ("GET", "", None, 400, "Malformed request: GET /v1/models/"),
    ],
)
def test_malformed_requests_get_400_as_tf_serving_answers(served, method, path, body, status, message):
    url, _ = served
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    response = requests.request(method, f"{url}/v1/models/{path}", data=data, allow_redirects=False)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["error"]
    assert requests.post(f"{url}/v1/models/lqvae:predict", json=GOOD).status_code == 200


def test_urls_match_case_insensitively_head_is_answered_and_every_error_is_json(served):
    url, _ = served
    assert requests.post(f"{url}/V1/MODELS/lqvae:PREDICT", json=GOOD).status_code == 200
    assert requests.get(f"{url}/v1/Models/lqvae/Versions/1/METADATA").status_code == 200
    head = requests.head(f"{url}/v1/models/lqvae")
    assert head.status_code == 200 and head.content == b""
    assert requests.head(f"{url}/openapi.json").status_code == 200
    wrong_method = requests.post(f"{url}/openapi.json")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "GET, HEAD"
    assert "error" in wrong_method.json()
    listing = requests.get(f"{url}/v1/models", allow_redirects=False)
    assert listing.status_code == 400 and "Malformed request" in listing.json()["error"]
    elsewhere = requests.get(f"{url}/nothing/here")
    assert elsewhere.status_code == 404 and "error" in elsewhere.json()


def test_outputs_are_written_with_float32_digits(served, fmnist_images):
    url, _ = served
    text = requests.post(f"{url}/v1/models/lqvae:predict", json={"inputs": fmnist_images[:1].tolist()}).text
    numbers = [n for n in text.replace("[", " ").replace("]", " ").replace(",", " ").split() if "." in n]
    assert numbers and all(len(n.lstrip("-").replace("e", "").replace(".", "")) <= 10 for n in numbers)
    for number in numbers[:50]:
        assert float(np.float32(number)) == float(np.float32(float(number)))


def _png_header(width, height):
    """The first bytes of a PNG: what a server sees before it would decode the pixels."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


@pytest.mark.parametrize(
    "image, message",
    [(_png_header(20000, 20000), "PNG of 20000x20000 pixels; the model takes 28x28"), (b"GIF89a....", "not a PNG")],
)
def test_images_are_checked_from_their_header_before_decoding(served, image, message):
    url, _ = served
    body = {"signature_name": "purify_png", "instances": [{"b64": base64.b64encode(image).decode()}]}
    response = requests.post(f"{url}/v1/models/lqvae:predict", json=body)
    assert response.status_code == 400 and message in response.json()["error"]


@pytest.mark.parametrize("http_parser", ["httptools", "h11"])
def test_limits_images_per_request_read_timeout_and_connections(tmp_path, purifier, http_parser):
    export_purifier(purifier, str(tmp_path), "lqvae", warmup=False)
    limits = ServingLimits(max_images_per_request=4, request_read_timeout_s=0.5, max_connections=3)
    with running_server(str(tmp_path / "lqvae"), "lqvae", limits=limits, http_parser=http_parser) as url:
        too_many = requests.post(f"{url}/v1/models/lqvae:predict", json={"inputs": np.zeros((5, 28, 28, 1)).tolist()})
        assert too_many.status_code == 413 and "at most 4 per request" in too_many.json()["error"]
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as slow:
            slow.sendall(b"POST /v1/models/lqvae:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            slow.settimeout(10)
            answer = slow.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408") and b'"error"' in answer
        with socket.create_connection((host, int(port))) as garbage:  # not HTTP at all: uvicorn's 400, as JSON
            garbage.sendall(b"\x00\x01 NOT HTTP\r\n\r\n")
            garbage.settimeout(10)
            answer = garbage.recv(4096)
        assert answer.startswith(b"HTTP/1.1 400") and b'{"error":' in answer
        idle = [socket.create_connection((host, int(port))) for _ in range(3)]
        try:
            time.sleep(0.1)
            # At the limit, a new connection takes the place of the one idle longest.
            with socket.create_connection((host, int(port))) as extra:
                extra.sendall(b"GET /v1/models/lqvae HTTP/1.1\r\nHost: x\r\n\r\n")
                extra.settimeout(10)
                assert extra.recv(4096).startswith(b"HTTP/1.1 200")
            idle[0].settimeout(10)
            assert idle[0].recv(4096) == b""
        finally:
            for connection in idle:
                connection.close()
        time.sleep(0.2)
        assert requests.post(f"{url}/v1/models/lqvae:predict", json=GOOD).status_code == 200


def test_failed_load_is_retried_shown_in_status_and_served_once_complete(tmp_path, purifier, fmnist_images):
    export_purifier(purifier, str(tmp_path), "lqvae", warmup=False)
    complete = export_purifier(_model(7), str(tmp_path / "staging"), "lqvae", warmup=False)
    broken = tmp_path / "lqvae" / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"half a file")
    interval = 1.0
    with running_server(
        str(tmp_path / "lqvae"), "lqvae", poll_seconds=0.2, max_num_load_retries=100, load_retry_interval_s=interval
    ) as url:
        client = RestClient(url, "lqvae")
        status = RestClient(url, "lqvae", version=2).status()["model_version_status"][0]
        assert status["state"] == "LOADING" and status["status"]["error_code"] == "UNKNOWN"
        assert status["status"]["error_message"]
        np.testing.assert_allclose(client.predict(fmnist_images[:2]), purifier.purify(fmnist_images[:2]), atol=1e-5)
        (broken / "saved_model.pb").unlink()
        for name in os.listdir(complete):
            os.rename(os.path.join(complete, name), broken / name)
        completed_at = time.monotonic()
        while (status := RestClient(url, "lqvae", version=2).status()["model_version_status"][0])[
            "state"
        ] != "AVAILABLE":
            assert time.monotonic() - completed_at < 60, status
            time.sleep(0.05)
        # Two retry intervals, plus the load itself on a busy machine.
        assert time.monotonic() - completed_at < 2 * interval + 20
        np.testing.assert_allclose(client.predict(fmnist_images[:2]), _model(7).purify(fmnist_images[:2]), atol=1e-5)


def test_given_up_version_is_tried_again_when_its_folder_changes(tmp_path, purifier):
    export_purifier(purifier, str(tmp_path), "lqvae", warmup=False)
    broken = tmp_path / "lqvae" / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"half a file")
    registry = build_registry(str(tmp_path / "lqvae"), "lqvae", max_num_load_retries=0)
    assert registry.status(2)["model_version_status"][0]["state"] == "END"
    assert registry.resolve().version == 1
    export_purifier(purifier, str(tmp_path / "staging"), "lqvae", warmup=False)
    (broken / "saved_model.pb").unlink()
    for name in os.listdir(tmp_path / "staging" / "lqvae" / "1"):
        os.rename(tmp_path / "staging" / "lqvae" / "1" / name, broken / name)
    registry.reload()
    assert registry.status(2)["model_version_status"][0]["status"] == {"error_code": "OK", "error_message": ""}
    assert registry.resolve().version == 2
    shutil.rmtree(broken)  # metadata is held with the loaded version, not read from its folder
    assert ServingApp(registry)._metadata(registry.resolve())["metadata"]["signature_def"]["signature_def"]


def test_batching_server_answers_concurrent_clients_and_swaps_versions_without_failures(tmp_path, fmnist_images):
    first, second = _model(1), _model(7)
    export_purifier(first, str(tmp_path), "lqvae", warmup=False)
    batching = BatchingParameters(max_batch_size=8, batch_timeout_micros=5000)
    with running_server(str(tmp_path / "lqvae"), "lqvae", poll_seconds=0.1, batching=batching) as url:
        images = fmnist_images[:16]
        want = first.purify(images)
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda i: RestClient(url, "lqvae").predict(images[i : i + 1]), range(16)))
        np.testing.assert_allclose(np.concatenate(got), want, atol=1e-5)
        failures, answered, stop = [], [0], threading.Event()

        def hammer(index):
            client = RestClient(url, "lqvae")
            while not stop.is_set():
                try:
                    result = client.predict(images[index : index + 1])
                    assert any(np.allclose(result, m.purify(images[index : index + 1]), atol=1e-5) for m in models)
                    answered[0] += 1
                except Exception as error:  # any failure during the swap fails the test
                    failures.append(error)

        models = (first, second)
        for model in models:
            model.purify(images[:1])
        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        export_purifier(second, str(tmp_path), "lqvae", warmup=False)
        deadline = time.monotonic() + 60
        while RestClient(url, "lqvae").status()["model_version_status"][0]["state"] != "AVAILABLE" or (
            RestClient(url, "lqvae").status()["model_version_status"][0]["version"] != "2"
        ):
            assert time.monotonic() < deadline, "version 2 was never picked up"
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join()
        assert failures == [] and answered[0] > 0


@pytest.mark.parametrize("depth", [2, 600, 1000])
def test_string_inputs_nested_deeper_than_their_rank_are_a_400(served, depth):
    # A purify_png body nested hundreds of levels deep once ended in a RecursionError and a 500.
    url, _ = served
    leaf = '{"b64": "AAAA"}'
    body = '{"signature_name": "purify_png", "instances": ' + "[" * depth + leaf + "]" * depth + "}"
    response = requests.post(f"{url}/v1/models/lqvae:predict", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert "error" in response.json()
