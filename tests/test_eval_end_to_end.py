"""Attacks through the filter: BPDA beats the naive gradient; `lqvae eval` end to end."""

import json

import keras
import numpy as np
import pytest

from lqvae_tf import LQVAE
from lqvae_tf.attacks import make_attack
from lqvae_tf.cli.main import main
from lqvae_tf.defenses import LQVAEDefense
from lqvae_tf.evaluation import Evaluation

from conftest import tiny_config


@pytest.fixture(scope="module")
def trained(fmnist_test_arrays, tmp_path_factory):
    """A tiny purifier and two small classifiers trained on real Fashion-MNIST (test split 0-2999),
    saved as files, plus 60 held-out images (4000-4059) to attack."""
    images = fmnist_test_arrays[0].astype(np.float32) / 255.0
    labels = fmnist_test_arrays[1]
    keras.utils.set_random_seed(0)
    purifier = LQVAE(tiny_config(width=0.25, latent_dim=32))
    purifier.compile()
    purifier.fit(images[:2048], batch_size=32, epochs=4, verbose=0)
    folder = tmp_path_factory.mktemp("models")
    purifier.save(folder / "purifier.keras")
    classifiers = {}
    for name, hidden in (("P", 64), ("Q", 32)):
        model = keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                keras.layers.Flatten(),
                keras.layers.Dense(hidden, activation="relu"),
                keras.layers.Dense(10),
            ]
        )
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        # Trained on purified images too, so that the classifier works behind the filter.
        train = np.concatenate([images[:3000], purifier.purify(images[:3000])])
        model.fit(train, np.concatenate([labels[:3000]] * 2), epochs=4, batch_size=64, verbose=0)
        model.save(folder / f"classifier_{name}.keras")
        classifiers[name] = model
    return purifier, classifiers, images[4000:4060], labels[4000:4060], folder


def test_bpda_pgd_beats_the_naive_gradient_through_the_filter(trained):
    purifier, classifiers, x, y, _ = trained
    evaluation = Evaluation(x, y, {"P": classifiers["P"]}, [LQVAEDefense(purifier)], verbose=False)
    attack = make_attack("pgd", eps=0.2, eps_iter=0.02, nb_iter=20)
    naive = evaluation.end_to_end(attack, "P", gradient="naive").defended["lq-vae"]
    bpda = evaluation.end_to_end(attack, "P", gradient="bpda").defended["lq-vae"]
    clean = evaluation.accuracy(classifiers["P"], x, LQVAEDefense(purifier))
    assert clean.percent > 40, clean  # the filter keeps the classifier useful
    assert bpda.percent < naive.percent - 15, (naive, bpda)  # naive "robustness" is masking


def test_eval_command_writes_tables_figures_and_resumes_from_cache(trained, tmp_path, capsys):
    _, _, _, _, folder = trained
    out = tmp_path / "eval"
    args = [
        "eval",
        "--purifier",
        str(folder / "purifier.keras"),
        "--classifiers",
        f"{folder / 'classifier_P.keras'},{folder / 'classifier_Q.keras'}",
        "--attacks",
        "fgsm,bpda-fgsm,identity-fgsm,transfer-fgsm",
        "--n",
        "40",
        "--eps-grid",
        "0.1,0.3",
        "--attack-param",
        "fgsm.eps=0.15",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    first = capsys.readouterr().out
    table = (out / "results.md").read_text()
    for title in ("White-box attacks", "Black-box transfer", "End-to-end white-box"):
        assert title in table
    assert "| fgsm | P/Q | 40 |" in table and "eps=0.15" in table
    saved = json.loads((out / "results.json").read_text())
    # white-box, BPDA, identity, per-image worst of the two, transfer: on P and Q each
    assert len(saved["rows"]) == 5 * 2 and saved["meta"]["n"] == 40 and saved["meta"]["seed"] == 0
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 10 * 4
    bpda, identity, worst = (r for r in saved["rows"] if r["setting"] == "end-to-end" and r["classifier"] == "P")
    assert worst["params"]["worst_of"] == [["bpda", 1], ["identity", 1]] and worst["seconds"] == 0.0
    fewest = min(bpda["defended"]["lq-vae"]["correct"], identity["defended"]["lq-vae"]["correct"])
    assert worst["defended"]["lq-vae"]["correct"] <= fewest
    assert "| adaptive: per-image worst of BPDA / identity-BPDA, fgsm eps 0.15 | fgsm | P | 40 |" in table
    seconds = [row["seconds"] for row in saved["rows"]]
    assert all(isinstance(s, float) and s >= 0 for s in seconds) and sum(seconds) > 0  # each row timed
    assert table.count("Time: ") == 3 and "over 2 rows (the slowest:" in table
    for figure in ("tsne_latent.png", "bit_flips.png", "accuracy_vs_eps.png"):
        assert (out / figure).read_bytes()[:4] == b"\x89PNG"
    curve = json.loads((out / "accuracy_vs_eps.json").read_text())
    assert curve["eps"] == [0.1, 0.3] and len(curve["accuracy"]["lq-vae"]) == 2
    cached = sorted(p.name for p in (out / "cache").iterdir())
    assert cached
    assert main(args) == 0  # a second run takes every adversarial batch from the cache
    assert sorted(p.name for p in (out / "cache").iterdir()) == cached
    # ... and counts the crafting times recorded beside them, so each row still says what it costs.
    rerun = json.loads((out / "results.json").read_text())["rows"]
    for first_row, row in zip(saved["rows"], rerun):
        assert row["untimed_batches"] == 0 and row["seconds"] >= row["recorded_seconds"]
        assert row["recorded_seconds"] <= first_row["seconds"] + 0.1  # the crafting part of the first run's time
    assert sum(row["recorded_seconds"] for row in rerun) > 0
    # Each crafting's seconds from scratch, by its description: the same on the cached rerun.
    crafted = saved["meta"]["craft_seconds"]
    assert "fgsm+bpda on lq-vae+P" in crafted and "fgsm on Q" in crafted
    assert list(crafted.values()) == sorted(crafted.values(), reverse=True) and min(crafted.values()) > 0
    recrafted = json.loads((out / "results.json").read_text())["meta"]["craft_seconds"]
    assert recrafted.keys() == crafted.keys()
    assert all(abs(recrafted[name] - seconds) < 0.01 for name, seconds in crafted.items())
    assert "recorded when an earlier run made the cached batches read here" in (out / "results.md").read_text()
    untimed = lambda text: [line for line in text.splitlines() if not line.startswith("Time: ")]  # noqa: E731
    assert untimed(capsys.readouterr().out) == untimed(first)  # the same numbers; only the times differ


def test_eval_command_reports_missing_files(tmp_path, capsys):
    assert main(["eval", "--purifier", str(tmp_path / "none.keras"), "--out", str(tmp_path)]) == 2
    assert "purifier file" in capsys.readouterr().err


def test_eval_refuses_two_classifiers_of_one_name_instead_of_dropping_one(tmp_path, capsys):
    """Store paths all end in model.keras: keyed by file name, the second would replace the first."""
    from lqvae_tf.cli.evaluate import _classifier_paths

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "model.keras").write_bytes(b"")
    both = f"{tmp_path / 'a' / 'model.keras'},{tmp_path / 'b' / 'model.keras'}"
    with pytest.raises(ValueError, match="two classifiers are named 'model'.*give the files different names"):
        _classifier_paths(both, str(tmp_path))
    (tmp_path / "b" / "classifier_B.keras").write_bytes(b"")
    named = _classifier_paths(f"{tmp_path / 'a' / 'model.keras'},{tmp_path / 'b' / 'classifier_B.keras'}", "")
    assert list(named) == ["model", "B"]
