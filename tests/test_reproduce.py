"""`lqvae reproduce`: models kept by settings hash, the study's configuration, the --quick run end to end."""

from __future__ import annotations

import glob
import json
import os

import pytest

from lqvae_tf.classifiers import check_adversarial_settings, summary_path
from lqvae_tf.cli.main import main
from lqvae_tf.config import preset
from lqvae_tf.generated import is_generated
from lqvae_tf.provenance import code_version
from lqvae_tf.study import ROBUST_COLUMNS, STACKED_COLUMNS, ModelStore, settings_hash, study_config
from lqvae_tf.study.run import PAPER_COLUMN, fgsm_training_lines, rows_time_lines, training_curves

COLUMNS = ("lq-vae", "defense-gan", *ROBUST_COLUMNS, *STACKED_COLUMNS)
# The quick Fashion-MNIST study also has the authors' purifier (tiny) as a column; CelebA's has not.
COLUMNS_28 = (*COLUMNS, PAPER_COLUMN)


def test_store_trains_once_per_settings_and_again_when_they_change(tmp_path):
    store = ModelStore(str(tmp_path))
    calls = []

    def train(path):
        calls.append(path)
        with open(path, "w") as handle:
            handle.write("model")

    first, reused_first = store.get_or_train("classifier_A", {"epochs": 1}, train)
    again, reused_again = store.get_or_train("classifier_A", {"epochs": 1}, train)
    other, reused_other = store.get_or_train("classifier_A", {"epochs": 2}, train)
    assert (reused_first, reused_again, reused_other) == (False, True, False)
    assert first == again != other and calls == [first, other]
    with open(os.path.join(os.path.dirname(first), "settings.json")) as handle:
        assert json.load(handle) == {"epochs": 1}
    assert settings_hash("k", {"a": 1, "b": 2}) == settings_hash("k", {"b": 2, "a": 1})


def test_store_refuses_a_trainer_that_writes_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="did not write"):
        ModelStore(str(tmp_path)).get_or_train("gan", {}, lambda path: None)


def test_store_counts_the_earlier_seconds_a_resumed_trainer_reports(tmp_path):
    def train(path):
        with open(path, "w") as handle:
            handle.write("model")
        return 1000.0  # seconds that interrupted attempts spent before this one resumed

    path, _ = ModelStore(str(tmp_path)).get_or_train("purifier", {}, train)
    assert 1000.0 <= ModelStore.training_record(path)["seconds"] < 1060.0


@pytest.mark.parametrize("dataset, eps", [("mnist", 0.3), ("fashion_mnist", 0.1)])
def test_madry_baselines_train_from_scratch_with_multi_step_pgd_and_a_ramped_eps(dataset, eps):
    madry = study_config(dataset).madry
    assert "warm_start" not in madry and madry["limit"] is None  # from scratch, on the full split
    assert (
        madry["eps"] == eps and madry["steps"] >= 5 and madry["step_size"] == pytest.approx(2.5 * eps / madry["steps"])
    )
    assert 0 < madry["eps_ramp_epochs"] < madry["epochs"] >= 10 and madry["validation_limit"] > 0
    check_adversarial_settings("pgd", madry["eps"], madry["steps"], madry["step_size"], None, madry["eps_ramp_epochs"])


def test_training_curves_show_every_epoch_of_each_adversarial_training_and_nothing_else():
    summary = {
        "adversarial": {"method": "pgd", "eps": 0.3, "steps": 10, "step_size": 0.075},
        "seconds": 12.5,
        "curve": {"eps": [0.1, 0.2, 0.3], "accuracy": [0.5, 0.6, 0.7], "val_accuracy": [0.4, 0.55, 0.65]},
    }
    lines = training_curves({"classifier A": {"test_accuracy": 0.99}, "classifier A (madry)": summary})
    assert lines[1] == "Training curve of classifier A (madry) (pgd, eps 0.3, 10 step(s) of 0.075; 12.5 s in all):"
    header = (
        "| epoch | eps attacked | train accuracy under the training attack | test accuracy under the training attack |"
    )
    assert lines[3] == header
    assert lines[5:] == ["| 1 | 0.1 | 50.00 | 40.00 |", "| 2 | 0.2 | 60.00 | 55.00 |", "| 3 | 0.3 | 70.00 | 65.00 |"]
    # Where the training recorded each epoch's seconds, they are a column: a paused epoch stands out.
    timed = training_curves({"classifier A (madry)": {**summary, "epoch_seconds": [4.0, 1511.2, 7.3]}})
    assert timed[3] == header[:-2] + " | seconds |" and timed[4] == "|---" * 5 + "|"
    assert timed[5:] == [
        "| 1 | 0.1 | 50.00 | 40.00 | 4 |",
        "| 2 | 0.2 | 60.00 | 55.00 | 1511 |",
        "| 3 | 0.3 | 70.00 | 65.00 | 7 |",
    ]


def test_the_page_says_from_its_rows_whether_fgsm_training_collapses_under_pgd():
    def row(setting, attack, accuracy, eps=None):
        params = {"eps": eps} if eps is not None else {}
        return {"setting": setting, "attack": attack, "params": params, "defended": {"adv-tr": {"accuracy": accuracy}}}

    rows = [row("white-box", "fgsm", 80.0), row("white-box", "fgsm", 70.0), row("white-box", "deepfool", 1.0)]
    rows += [
        row("end-to-end", "pgd", 60.0, 0.1),
        row("end-to-end", "pgd", 58.0, 0.1),
        row("end-to-end", "pgd", 2.0, 0.3),
    ]
    (line,) = [line for line in fgsm_training_lines(rows) if line]
    assert "keeps 75.00% under FGSM" in line and "58.00% at eps 0.1, 2.00% at eps 0.3" in line
    assert line.endswith("it collapses under PGD (more than 20 points below its FGSM accuracy) at eps 0.3.")
    assert fgsm_training_lines(rows[:3]) == []  # no PGD row: nothing to say


def test_the_page_states_what_its_rows_cost_from_scratch_where_a_rerun_read_them_from_the_cache():
    rows = [{"seconds": 600.0, "recorded_seconds": 590.0}, {"seconds": 2.5, "recorded_seconds": 0.0}, {}]
    (line,) = rows_time_lines(rows)
    assert line.startswith("The table rows, each as computed from scratch: 602 s (590 s of it recorded when an earlier")
    (line,) = rows_time_lines([{"seconds": 2.5, "untimed_batches": 3}])
    assert "3 cached batches made before their times were kept are not counted" in line
    assert rows_time_lines([{"seconds": 2.5, "recorded_seconds": 0.0}]) == []  # this run's own time says it


def test_study_configs_name_every_baseline_and_reject_impossible_ones():
    full = study_config("fashion_mnist")
    assert full.defense_gan == {"steps": 200, "restarts": 10, "learning_rate": 10.0, "momentum": 0.7}
    assert "papernot-deepfool" in full.attacks and set(full.classifiers) >= {"A", "B"}
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'"):
        study_config("cifar10")
    with pytest.raises(ValueError, match="at least two classifiers"):
        full.replace(classifiers=("A",))
    with pytest.raises(ValueError, match="held-out seed images"):
        full.replace(held_out=0)
    with pytest.raises(ValueError, match="defense_gan_n must be between 1 and n"):
        full.replace(defense_gan_n=full.n + 1)
    with pytest.raises(ValueError, match="paper_purifier_n limits the authors' purifier's column, but the study has"):
        full.replace(paper_purifier_n=100)
    with pytest.raises(ValueError, match=r"paper_purifier_n must be between 1 and n \(1000\), got 0"):
        study_config("mnist").replace(paper_purifier_n=0)
    with pytest.raises(ValueError, match="the purifier's classifier 'Z' is not one of the study's"):
        full.replace(purifier={**full.purifier, "classifier": "Z"})
    with pytest.raises(ValueError, match="paper_purifier is the authors' classifier-free recipe"):
        full.replace(paper_purifier={"preset": "paper", "overrides": {}, "limit": None, "classifier": "A"})
    with pytest.raises(ValueError, match="gan_target needs exactly accuracy, classifier, images and every_epochs"):
        full.replace(gan_target={"accuracy": 0.9})
    with pytest.raises(ValueError, match="gan_target's classifier 'Z' is not one of"):
        full.replace(gan_target={**full.gan_target, "classifier": "Z"})
    # Defense-GAN's generator trains toward the floors, capped at the reference's 200k steps.
    for dataset, floor in (("mnist", 0.90), ("fashion_mnist", 0.85)):
        config = study_config(dataset)
        assert config.gan_target["accuracy"] == floor and config.gan["epochs"] * 60_000 // 64 // 5 >= 200_000
    # The authors' purifier at its full budget stands as its own column on MNIST.
    assert study_config("mnist").paper_purifier == {"preset": "paper", "overrides": {}, "limit": None}


def test_a_guided_study_purifier_is_trained_after_and_with_its_classifier(tmp_path, monkeypatch):
    """The MNIST and Fashion-MNIST studies' purifier is the guided preset, trained with classifier A:
    A first, the purifier guided by and retrained against A's file, keyed by A's settings."""
    import keras

    from lqvae_tf.study import train_models

    quick = study_config("fashion_mnist", quick=True)
    tiny = {**quick.purifier["overrides"], "epochs": 2, "adversarial": {"mode": "end_to_end", "clean_epochs": 1}}
    purifier = {"preset": "fashion_mnist_guided", "overrides": tiny, "limit": 64}
    with pytest.raises(ValueError, match="trains with a classifier: name one of the study's classifiers"):
        train_models(quick.replace(purifier=purifier), ModelStore(str(tmp_path / "models")), only=("purifier",))
    assert not (tmp_path / "models").exists()
    guided = quick.replace(purifier={**purifier, "classifier": "A"}, classifier={**quick.classifier, "limit": 256})
    paths = train_models(guided, ModelStore(str(tmp_path / "models")), only=("purifier",))
    assert list(paths) == ["purifier", "classifier A"]  # A trained too (and first), B not at all
    config = keras.models.load_model(paths["purifier"]).config
    assert config.guidance.classifier == paths["classifier A"] == config.adversarial.classifier
    with open(os.path.join(os.path.dirname(paths["purifier"]), "settings.json"), encoding="utf-8") as handle:
        key = json.load(handle)
    assert key["classifier"] == {"name": "A", **guided.classifier}  # A's settings, not its path
    assert key["config"]["guidance"]["classifier"] is None


def test_each_preset_is_its_classifier_free_base_fine_tuned_guided_by_several_classifiers():
    from lqvae_tf.presets import FILTER_FIELDS

    make_presets = load_script("make_presets")
    for dataset in ("fashion_mnist", "mnist"):
        study = make_presets.base_study(dataset)
        # The base: the classifier-free preset with the settings (and so the store key) it was first made with.
        assert study.purifier == {"preset": dataset, "overrides": {}, "limit": None}
        assert study.classifier == make_presets.CLASSIFIER_SETTINGS == study_config("mnist").classifier
        tuned = make_presets.fine_tune_config(dataset, epochs=1)
        assert all(getattr(tuned, field) == getattr(preset(dataset), field) for field in FILTER_FIELDS)
        assert tuned.guidance.weight == 3.0 and tuned.guidance.classifier is None  # the guides are handed over
        assert (tuned.adversarial.mode, tuned.adversarial.clean_epochs, tuned.epochs) == ("end_to_end", 0, 1)
        heavier = make_presets.fine_tune_config(dataset, epochs=1, guidance_weight=10.0)
        assert heavier.guidance.weight == 10.0 and heavier.replace(guidance=tuned.guidance) == tuned
        lighter = make_presets.fine_tune_config(dataset, epochs=1, adversarial_fraction=0.1)
        assert lighter.adversarial.fraction == 0.1 and tuned.adversarial.fraction == 0.25
    flags = ["--models", "m", "--guidance-weight", "10", "--adversarial-fraction", "0.1", "mnist"]
    args = make_presets.build_parser().parse_args(flags)
    assert (args.guidance_weight, args.adversarial_fraction) == (10.0, 0.1)
    assert make_presets.GUIDES == ("A", "B", "C") and not set(make_presets.HELD_OUT) & set(make_presets.GUIDES)


@pytest.mark.parametrize(
    "dataset, tables",
    [
        ("mnist", {"fgsm", "deepfool", "cw"}),
        ("fashion_mnist", {"papernot-deepfool"}),
        ("celeb_a", {"fgsm", "deepfool", "cw", "bim", "pgd", "papernot-cw"}),
    ],
)
def test_every_study_runs_the_papers_tables_and_its_bpda_setting_beside_adaptive_attacks(dataset, tables):
    from lqvae_tf.evaluation.suite import AttackSpec

    config = study_config(dataset)
    specs = [AttackSpec.parse(text) for text in config.attacks]
    assert tables <= {text for text in config.attacks if "[" not in text}
    assert AttackSpec("end-to-end", "soft", "authors_fgsm") in specs  # the paper's Table 5 setting
    adaptive = [s for s in specs if s.setting == "end-to-end" and s.attack == "pgd"]
    for how, eps in (("bpda", 0.1), ("bpda", 0.3), ("identity", 0.1), ("identity", 0.3)):
        (spec,) = [
            s for s in adaptive if s.how == how and dict(s.params)["eps"] == eps and dict(s.params)["nb_iter"] == 40
        ]
        assert spec.restarts >= 2
        if how == "bpda":  # and its checks: twice the steps, and the gradient-free Square attack
            assert [s for s in adaptive if s.how == how and dict(s.params) == {**dict(spec.params), "nb_iter": 80}]
            assert [s for s in specs if s.attack == "square" and dict(s.params)["eps"] == eps]
    assert any(s.how == "soft" and s.eot and s.eot > 1 for s in adaptive)  # BPDA + EOT over the sampled latent
    # A check compares whole rows: the adaptive rows and their checks score the same images.
    checked = [s for s in specs if s.setting == "end-to-end" and (s.attack == "square" or s in adaptive)]
    assert len({s.n for s in checked}) == 1 and (checked[0].n is None or 100 <= checked[0].n <= config.n)
    # 1,000 images, but 200 on the CelebA subset, whose 150 minutes do not fit 1,000 (its scale text says so).
    assert config.n >= (200 if dataset == "celeb_a" else 1000) and 1 <= config.defense_gan_n <= config.n
    assert dataset != "celeb_a" or "200 of the 2,000" in config.scale
    assert config.classifiers == ("A", "B", "C")  # the paper's tables' classifiers (and black-box pairs)
    # MNIST and Fashion-MNIST train Madry from scratch (with an eps ramp); CelebA's fine-tunes the
    # clean classifier, as from scratch it collapsed to one class.
    assert bool(config.madry.get("warm_start")) == (dataset == "celeb_a")
    # Carlini-Wagner in both settings: Defense-GAN's and the standard minimal-perturbation one.
    # The standard one, far costlier than Defense-GAN's per image, on A's first images only.
    (cw_l2,) = [spec for spec in specs if spec.attack == "cw_l2"]
    assert "cw" in config.attacks and cw_l2.on == ("A",) and 20 <= cw_l2.n <= config.n
    assert bool(config.scale) == (dataset == "celeb_a")  # the subset is stated beside every CelebA table


@pytest.mark.slow
def test_reproduce_quick_writes_a_table_with_every_column_and_reuses_its_models(tmp_path, monkeypatch):
    args = ["reproduce", "fashion_mnist", "--quick", "--out", str(tmp_path / "out")]
    args += ["--models", str(tmp_path / "models"), "--quiet"]
    assert main(args) == 0
    with open(tmp_path / "out" / "results" / "fashion_mnist.md", encoding="utf-8") as handle:
        report = handle.read()
    with open(tmp_path / "out" / "results.md", encoding="utf-8") as handle:
        index = handle.read()
    assert (
        "[fashion_mnist.md](results/fashion_mnist.md)" in index and "| white-box attacks on the classifier |" in index
    )
    tables, gaps = report.split("## Where the paper's averages are missed")  # the measured misses close the page
    table_headers = [line for line in tables.splitlines() if line.startswith(("| attack |", "| what | attack |"))]
    assert len(table_headers) == 3  # white-box, black-box (transfer), end-to-end
    assert "No paper average is missed" in gaps or "| attack | classifier | ours | paper | gap |" in gaps
    for header in table_headers:
        for column in ("no defense", *COLUMNS_28):
            assert f"| {column} |" in header, (column, header)
    with open(tmp_path / "out" / "results" / "fashion_mnist" / "results.json", encoding="utf-8") as handle:
        rows = json.load(handle)["rows"]
    assert {row["setting"] for row in rows} == {"white-box", "black-box", "end-to-end"}
    assert {row["attack"] for row in rows if row["setting"] == "end-to-end"} == {"authors_fgsm", "pgd"}
    for row in rows:
        skipped = set(row["params"].get("skip", []))  # the quick study's PGD row skips Defense-GAN
        assert set(row["defended"]) == set(COLUMNS_28) - skipped and set(row["clean_defended"]) == set(COLUMNS_28)
        # The quick study scores the authors' purifier on the first 8 of its 16 images (`paper_purifier_n`),
        # its cells and its bit flips alike.
        assert all(
            0 <= cell["accuracy"] <= 100 and cell["n"] == (8 if column == PAPER_COLUMN else 16)
            for column, cell in row["defended"].items()
        )
        assert row["clean_defended"][PAPER_COLUMN]["n"] == 8
    assert "| not run |" in report and "paper's setting (authors' BPDA.py)" in report
    models = [line for line in report.splitlines() if line.startswith("| ") and "model.keras" in line]
    # The purifier, the paper's, A and B plain / Madry / FGSM-trained, A's Papernot substitute, the GAN.
    assert len(models) == 1 + 1 + 2 * 3 + 1 + 1
    (substitute,) = [line for line in models if line.startswith("| substitute A/B |")]
    assert "`<models>/substitute_A_B-" in substitute and " (agrees with its target on " in substitute
    assert any(
        row["params"].get("substitute") == "papernot" and (row["classifier"], row["source"]) == ("A", "B")
        for row in rows
    )
    assert all("| no |" in line for line in models)
    assert all(line.split(" | ")[1].startswith("`<models>/") for line in models)  # not this machine's path
    assert all(line.split(" | ")[3].split(" (")[0].replace(".", "").isdigit() for line in models)  # seconds
    assert "lqvae reproduce fashion_mnist --quick" in report and "accuracy_vs_eps" in report
    assert f"at commit {code_version()};" in report  # the code that made it, beside the date
    assert "Models phase: " in report and " hours of training in all" in report
    # How far each purifier trained: the quick paper purifier, 1 epoch of 512 images at batch 32.
    assert (
        "- purifier (paper): 1 of 1 epochs, 16 optimizer steps of batch 32 (the authors' Train_LQ_VAE.py: 10,000)."
        in report
    )
    assert "- purifier: " in report
    # The quick study's floors, read from its rows: the tiny Madry model keeps at least 0% clean and
    # not 100% under PGD at eps 0.3; the masking check reads the FGSM curve (n images a point).
    floors = [line for line in report.splitlines() if line.startswith("| `madry`")]
    verdicts = [line.rstrip(" |").rsplit("| ", 1)[-1] for line in floors]
    assert verdicts[:2] == ["met", "**missed**"] and len(floors) == 3
    with open(tmp_path / "out" / "results" / "fashion_mnist" / "accuracy_vs_eps.json", encoding="utf-8") as handle:
        assert json.load(handle)["n"] == 16
    for name in ("A", "B"):  # the quick study's Madry classifiers fine-tune its clean ones
        (madry,) = glob.glob(str(tmp_path / "models" / f"classifier_{name}_pgd-*" / "model.keras"))
        (clean,) = glob.glob(str(tmp_path / "models" / f"classifier_{name}-*" / "model.keras"))
        with open(summary_path(madry), encoding="utf-8") as handle:
            summary = json.load(handle)
        assert summary["init_from"] == clean and not os.path.exists(os.path.join(os.path.dirname(madry), "backup"))
        # The page shows each adversarial training's curve, one row an epoch, from its summary.
        curve_title = f"Training curve of classifier {name} (madry) (pgd, eps {summary['adversarial']['eps']}"
        assert curve_title in report
        assert len(summary["curve"]["accuracy"]) == summary["epochs"]
    # The generator trained toward its target (out of reach for the quick one): its checks are shown.
    (gan,) = glob.glob(str(tmp_path / "models" / "gan-*" / "model.keras"))
    with open(summary_path(gan), encoding="utf-8") as handle:
        target = json.load(handle)["target"]
    assert [point["epoch"] for point in target["curve"]] == [1, 2] and not target["reached"]
    assert "Training of gan toward its target: classifier accuracy 100% behind Defense-GAN on 8 held-out" in report
    assert "**Adv-Tr** (the paper's FGSM adversarial training) keeps" in report

    def retrained(*_args, **_kwargs):
        raise AssertionError("the tables phase trained a Papernot substitute the models phase keeps")

    monkeypatch.setattr("lqvae_tf.evaluation.suite.papernot_substitute", retrained)
    monkeypatch.setattr("lqvae_tf.attacks.substitute.train_substitute", retrained)
    assert main(args) == 0  # nothing changed: every model is reused, the substitute too
    with open(tmp_path / "out" / "results" / "fashion_mnist.md", encoding="utf-8") as handle:
        again = [line for line in handle.read().splitlines() if line.startswith("| ") and "model.keras" in line]
    assert len(again) == len(models) and all("| yes |" in line for line in again)

    # A classifier that collapsed to one class is named so in the models table, not passed off as robust.
    (madry,) = glob.glob(str(tmp_path / "models" / "classifier_A_pgd-*" / "model.keras"))
    with open(summary_path(madry), encoding="utf-8") as handle:
        summary = json.load(handle)
    assert 0.0 < summary["test_top_class_share"] <= 1.0
    summary["test_top_class_share"] = 1.0
    with open(summary_path(madry), "w", encoding="utf-8") as handle:
        json.dump(summary, handle)
    assert main(args) == 0
    with open(tmp_path / "out" / "results" / "fashion_mnist.md", encoding="utf-8") as handle:
        flagged = [line for line in handle.read().splitlines() if "collapsed" in line]
    assert len(flagged) == 1 and flagged[0].startswith("| classifier A (madry) |")

    # The presets' command takes the base purifier and classifiers A and B from the same store, and
    # trains what the study has not: classifiers C, K and R, and the fine-tune guided by A, B and C.
    stored = sorted(os.listdir(tmp_path / "models"))
    make_presets = load_script("make_presets")
    out = tmp_path / "presets"
    args = ["--quick", "--models", str(tmp_path / "models"), "--out", str(out), "--test-images", "64"]
    args += ["--adaptive-images", "8", "fashion_mnist"]
    assert make_presets.main(args) == 0
    added = sorted(set(os.listdir(tmp_path / "models")) - set(stored))
    assert [name.rsplit("-", 1)[0] for name in added] == [
        "classifier_C",
        "classifier_K",
        "classifier_R",
        "preset_purifier",
    ]
    with open(out / "fashion_mnist" / "metrics.json", encoding="utf-8") as handle:
        metrics = json.load(handle)
    assert metrics["base"]["source"] == "store" and metrics["base"]["store"] in stored  # the study's purifier
    assert {metrics["store"]["A"], metrics["store"]["B"]} <= set(stored) and metrics["test_images"] == 64
    assert set(metrics["clean"]) == {"A", "B", "C", "R", "K"} and set(metrics["adaptive_on"]) == {"A", "R", "K"}
    for name in metrics["adaptive_on"]:
        measured = metrics["adaptive"][name]
        assert measured["adaptive"]["n"] == 8 and measured["worst"]["correct"] <= measured["adaptive"]["correct"]
    assert set(os.listdir(out / "fashion_mnist")) == {*metrics["files"], "config.json", "metrics.json", "README.md"}
    assert metrics["reconstruction_mse"]["trained"] < metrics["reconstruction_mse"]["untrained"]
    readme = (out / "fashion_mnist" / "README.md").read_text()
    assert f"make_presets.py {' '.join(args)}" in readme and is_generated(readme)
    assert readme == make_presets.markdown(metrics)
    again = sorted(os.listdir(tmp_path / "models"))
    assert make_presets.main(args) == 0 and sorted(os.listdir(tmp_path / "models")) == again  # all reused
    assert is_generated(report) and is_generated(index)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_each_shipped_presets_readme_is_what_make_presets_writes_from_its_metrics(name):
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lqvae_tf", "presets", name)
    with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    with open(os.path.join(folder, "README.md"), encoding="utf-8") as handle:
        assert handle.read() == load_script("make_presets").markdown(metrics)


def load_script(name: str):
    """`scripts/<name>.py` imported as a module (the scripts folder is not a package)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reproduce_without_the_data_fails_before_training_anything(tmp_path, monkeypatch, capsys):
    def no_network(address, timeout=None):
        raise OSError("network is unreachable")

    monkeypatch.setattr("socket.create_connection", no_network)
    monkeypatch.delenv("LQVAE_MNIST_DIR", raising=False)  # no IDX folder either
    args = ["reproduce", "mnist", "--quick", "--out", str(tmp_path / "out"), "--models", str(tmp_path / "models")]
    args += ["--quiet"]
    assert main(args) == 2
    assert "no network to download it" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()  # the data is checked first: nothing was trained


@pytest.mark.slow
def test_reproduce_quick_runs_the_same_way_on_celeb_a(tmp_path, monkeypatch):
    """The 64x64x3 path of every model (LQ-VAE conv64, classifiers, adversarial training, WGAN-GP,
    Defense-GAN) through tensorflow-datasets' mock CelebA: nothing is downloaded."""
    import tensorflow_datasets as tfds

    monkeypatch.delenv("LQVAE_CELEBA_DIR", raising=False)  # tensorflow-datasets' path, mocked

    args = ["reproduce", "celeb_a", "--quick", "--out", str(tmp_path / "out"), "--models", str(tmp_path / "models")]
    with tfds.testing.mock_data(num_examples=64):
        assert main([*args, "--quiet"]) == 0
    with open(tmp_path / "out" / "results" / "celeb_a" / "results.json", encoding="utf-8") as handle:
        rows = json.load(handle)["rows"]
    assert rows
    for row in rows:  # every column, less the defenses a row skips (the quick PGD row skips Defense-GAN)
        assert set(row["defended"]) == set(COLUMNS) - set(row["params"].get("skip", [])), row["attack"]
    assert {row["classifier"] for row in rows if row["setting"] == "white-box"} == {"A", "B"}


def test_index_averages_black_box_rows_per_attack_with_the_papers_line_after_its_own(tmp_path):
    from lqvae_tf.study.index import write_index

    def row(attack, pair, no_defense):
        cell = {"accuracy": 50.0}
        return {
            "setting": "black-box",
            "attack": attack,
            "classifier": pair[0],
            "source": pair[2],
            "no_attack": {"accuracy": 90.0},
            "no_defense": {"accuracy": no_defense},
            "defended": {column: cell for column in COLUMNS},
        }

    rows = [row("deepfool", "A/B", 80.0), row("deepfool", "B/A", 70.0), row("fgsm", "A/B", 10.0)]
    folder = tmp_path / "results" / "fashion_mnist"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"meta": {"n": 1000}, "rows": rows}))
    lines = open(write_index(str(tmp_path)), encoding="utf-8").read().splitlines()
    assert is_generated(lines[0])
    deepfool = lines.index(next(line for line in lines if line.startswith("| black-box transfer, deepfool |")))
    assert lines[deepfool].startswith("| black-box transfer, deepfool | 2 | 90.00 | 75.00 |")
    assert lines[deepfool + 1].startswith("| paper, same rows | 2 |")  # A/B and B/A of the paper's Table 3
    assert any(line.startswith("| black-box transfer, fgsm | 1 | 90.00 | 10.00 |") for line in lines)


def test_models_only_with_only_trains_the_named_models_alone_and_refuses_unknown_names(tmp_path, capsys):
    """`--only` spreads a long models phase over sessions: one model (and what it needs) per run."""
    models = str(tmp_path / "models")
    args = ["reproduce", "fashion_mnist", "--quick", "--models", models, "--quiet", "--models-only"]
    assert main([*args, "--only", "classifier B"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("classifier B: ")
    assert [name.split("-")[0] for name in os.listdir(models)] == ["classifier_B"]  # nothing else trained
    assert main([*args, "--only", "classifier Z"]) == 2
    assert "no model named 'classifier Z' in the fashion_mnist study; its models: " in capsys.readouterr().err
    assert main(["reproduce", "fashion_mnist", "--quick", "--models", models, "--only", "purifier"]) == 2
    assert "give it with --models-only" in capsys.readouterr().err
    assert len(os.listdir(models)) == 1


def test_the_celeb_a_study_filter_is_guided_by_classifier_a_on_clean_faces():
    """Issue 27: the classifier-free CelebA filter lost the gender; the study's is guided by A."""
    purifier = study_config("celeb_a").purifier
    assert purifier["classifier"] == "A" and purifier["preset"] == "celeb_a_guided"
    config = preset("celeb_a_guided")
    assert config.guidance.weight > 0 and config.adversarial is None
    assert config.replace(guidance=None) == preset("celeb_a")  # the same networks and training otherwise


def test_a_papernot_substitute_is_a_model_of_the_store_keyed_by_its_target_and_its_seeds(tmp_path):
    """Issue 27, item 9: the substitutes train in the models phase, once (on CelebA six of them cost
    44 minutes of every table run), keyed by what they imitate and the images they start from."""
    from lqvae_tf.study import model_names, train_models

    quick = study_config("fashion_mnist", quick=True)
    assert [name for name in model_names(quick) if name.startswith("substitute")] == ["substitute A/B"]
    both = quick.replace(attacks=("papernot-fgsm", "papernot-deepfool"))  # one substitute a pair, not a spec
    assert [name for name in model_names(both) if name.startswith("substitute")] == ["substitute A/B", "substitute B/A"]
    store = ModelStore(str(tmp_path / "models"))
    paths = train_models(quick, store, only=("substitute A/B",))
    assert list(paths) == ["classifier A", "substitute A/B"]  # its oracle first, nothing else
    folder = os.path.dirname(paths["substitute A/B"])
    with open(os.path.join(folder, "settings.json"), encoding="utf-8") as handle:
        key = json.load(handle)
    assert key["target"] == {"name": "A", **quick.classifier} and key["architecture"] == "B"
    assert key["seeds"] == {"n": quick.n, "held_out": quick.held_out}
    with open(summary_path(paths["substitute A/B"]), encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary["seeds"] == quick.held_out and 0.0 <= summary["test_agreement"] <= 1.0
    # Other seed images (a larger sample moves them) make another substitute.
    larger = train_models(quick.replace(n=20), store, only=("substitute A/B",))
    assert larger["substitute A/B"] != paths["substitute A/B"] and larger["classifier A"] == paths["classifier A"]


def test_reproduce_n_scores_fewer_images_and_defense_gan_on_at_most_as_many():
    from lqvae_tf.cli.reproduce import sized_config

    config = study_config("mnist")
    assert sized_config(config, None) == config
    small = sized_config(config, 50)  # below Defense-GAN's own limit: it is scored on all 50
    assert (small.n, small.defense_gan_n) == (50, 50)
    large = sized_config(config, 500)
    assert (large.n, large.defense_gan_n) == (500, config.defense_gan_n)
    limited = config.replace(paper_purifier_n=200)  # the authors' purifier's column shrinks the same way
    assert sized_config(limited, 50).paper_purifier_n == 50 and sized_config(limited, 500).paper_purifier_n == 200
    with pytest.raises(ValueError, match="--n must be a positive"):
        sized_config(config, 0)
