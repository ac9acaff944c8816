"""The results index (`docs/results.md`): adaptive rows per eps, never a minimum across budgets."""

import json

from lqvae_tf.study.index import write_index


def _row(attack, eps, accuracy, gradient="bpda"):
    cell = {"accuracy": accuracy}
    return {
        "setting": "end-to-end",
        "attack": attack,
        "params": {"eps": eps, "gradient": gradient},
        "classifier": "A",
        "source": "A",
        "no_attack": {"accuracy": 99.0},
        "no_defense": {"accuracy": 1.0},
        "defended": {"lq-vae": cell},
    }


def _index(tmp_path, rows, dataset="mnist", date="2026-12-06") -> str:
    """The index `write_index` builds from one study's `rows`."""
    folder = tmp_path / "results" / dataset
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"meta": {"date": date, "n": 10}, "rows": rows}))
    return open(write_index(str(tmp_path)), encoding="utf-8").read()


def test_adaptive_rows_get_one_worst_row_per_eps(tmp_path):
    rows = [
        _row("pgd", 0.1, 80.0, "bpda"),
        _row("pgd", 0.1, 70.0, "soft"),
        _row("pgd", 0.3, 20.0, "bpda"),
        _row("pgd", 0.3, 30.0, "identity"),
        _row("authors_fgsm", 0.15, 95.0),
    ]
    text = _index(tmp_path, rows, "mnist", "2026-12-04")
    by_name = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| end to end")}
    assert set(by_name) == {
        "end to end, adaptive at eps 0.1 (worst row)",
        "end to end, adaptive at eps 0.3 (worst row)",
        "end to end, paper's setting",
    }
    assert "| 70.00 |" in by_name["end to end, adaptive at eps 0.1 (worst row)"]  # not 0.3's 20.00
    assert "| 20.00 |" in by_name["end to end, adaptive at eps 0.3 (worst row)"]


def test_the_index_shows_every_column_the_rows_hold_after_the_papers(tmp_path):
    row = _row("fgsm", 0.3, 50.0)
    row.update(setting="white-box", defended={"lq-vae": {"accuracy": 50.0}, "madry+lq-vae": {"accuracy": 88.0}})
    text = _index(tmp_path, [row])
    (header,) = [line for line in text.splitlines() if line.startswith("| rows |")]
    assert header.endswith("| lq-vae | defense-gan | madry | adv-tr | madry+lq-vae |")
    (line,) = [line for line in text.splitlines() if line.startswith("| white-box")]
    assert line.endswith("| 50.00 |  |  |  | 88.00 |")


def test_a_white_box_attack_the_paper_lacks_gets_its_own_line_so_the_papers_line_matches(tmp_path):
    rows = []
    for attack, accuracy in (("fgsm", 60.0), ("cw", 20.0), ("cw_l2", 90.0)):
        row = _row(attack, 0.3, accuracy)
        row["setting"] = "white-box"
        rows.append(row)
    lines = _index(tmp_path, rows).splitlines()
    (paper_rows,) = [line for line in lines if line.startswith("| white-box attacks on the classifier |")]
    assert "| 2 | 99.00 | 1.00 | 40.00 |" in paper_rows  # fgsm and cw, as the paper's line below
    after = lines[lines.index(paper_rows) + 1]
    assert after.startswith("| paper, same rows | 2 |")
    (own,) = [line for line in lines if line.startswith("| white-box attacks on the classifier, cw_l2 (not in")]
    assert "| 1 | 99.00 | 1.00 | 90.00 |" in own


def test_a_row_at_other_attack_parameters_than_the_papers_gets_its_own_line_without_the_papers(tmp_path):
    rows = []
    for variant, accuracy in (("", 20.0), ("eps_iter=0.075", 5.0)):
        row = _row("pgd", 0.3, accuracy)
        params = {"eps": 0.3, "eps_iter": 0.075, "restarts": 2} if variant else {"eps": 0.3, "eps_iter": 0.01}
        row.update(setting="white-box", variant=variant, params=params)
        rows.append(row)
    lines = _index(tmp_path, rows, "celeb_a").splitlines()
    (papers,) = [line for line in lines if line.startswith("| white-box attacks on the classifier |")]
    assert "| 1 | 99.00 | 1.00 | 20.00 |" in papers  # the paper's PGD alone
    assert lines[lines.index(papers) + 1].startswith("| paper, same rows | 1 |")
    name = "| white-box attacks on the classifier, pgd[eps_iter=0.075,restarts=2] (not the paper's setting) |"
    (own,) = [line for line in lines if line.startswith(name)]
    assert "| 1 | 99.00 | 1.00 | 5.00 |" in own
    assert not any(line.startswith("| paper") for line in lines[lines.index(own) + 1 : lines.index(own) + 2])


def test_a_group_scored_on_fewer_images_than_the_sample_says_how_many(tmp_path):
    rows = [{**_row("pgd", 0.1, 80.0, "bpda"), "n": 4}, {**_row("pgd", 0.1, 70.0, "soft"), "n": 4}]
    rows.append({**_row("authors_fgsm", 0.15, 95.0), "n": 10})  # the sample's 10: no suffix
    lines = {line.split(" | ")[0].lstrip("| "): line for line in _index(tmp_path, rows).splitlines()}
    assert "end to end, paper's setting" in lines
    # Still the worst row (70), not the average of the two (75): the n goes on the name only.
    assert "| 70.00 |" in lines["end to end, adaptive at eps 0.1 (worst row), n = 4"]
