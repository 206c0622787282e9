"""RESULTS.md and the README's table, rendered from records: mean ± std, ratios, machines apart, fold suites
pooled, superseded records left out, only the region between the markers rewritten."""

import numpy as np

from omnifuse.bench import recorder, report

HAND_WRITTEN_HEAD = "# Results\n\nHand-written notes, with the published anchors: NBSVM 91.2%.\n\n"
HAND_WRITTEN_TAIL = "\n\n## Notes\n\nMore hand-written text | with a pipe.\n"


def _record(
    label,
    acc,
    train_seconds,
    invocation="i1",
    role="main",
    references=(),
    reached=None,
    sha="abc1234",
    samples_per_second=100.0,
    target="cifar10-x",
    overrides=(),
):
    epochs = [{"epoch": 1, "train_seconds": train_seconds, "cumulative_seconds": train_seconds}]
    epochs[0]["test_accuracy"] = {"cifar10": acc}
    return {
        "name": "cifar10-x",
        "label": label,
        "role": role,
        "kind": "omnifuse" if role == "main" else "reference",
        "target": target,
        "overrides": list(overrides),
        "references": list(references),
        "invocation": invocation,
        "started": f"2030-01-01T00:00:{len(label):02d}",
        "commit": {"sha": sha + "0" * 33, "dirty": False},
        "hardware": {"cpu": "Test CPU", "cores": 2},
        "epochs": epochs,
        "train_seconds": train_seconds,
        "first_step_seconds": 1.5,
        "samples_per_second": samples_per_second,
        "final": {"cifar10": {"accuracy": acc, "macro_f1": acc, "roc_auc": 0.9}},
        "time_to_accuracy": {"cifar10": reached or {"0.8": None}},
    }


def _write(results, records):
    for i, r in enumerate(records):
        recorder.write_json(results / r["name"] / f"{i:03d}-{r['label']}.json", r)


def test_table_has_mean_std_ratio_and_unreached_thresholds(tmp_path):
    results = tmp_path / "results"
    main = [
        _record("fast", 0.90, 50.0, references=["ref"], reached={"0.8": 20.0, "0.85": 30.0, "0.9": None}),
        _record("fast", 0.92, 70.0, references=["ref"], reached={"0.8": 22.0, "0.85": None, "0.9": None}),
    ]
    refs = [_record("ref", 0.60, 100.0, role="reference", sha="def5678", samples_per_second=80.0)]
    _write(results, main + refs)
    path = report.update_results(results)
    assert path == tmp_path / "RESULTS.md"
    text = path.read_text()
    assert text.startswith("# omnifuse results") and report.BEGIN in text and report.END in text
    row = next(line for line in text.splitlines() if line.startswith("| cifar10-x | fast |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "2"  # seeds
    assert cells[3] == "91.00 ± 1.41"  # accuracy mean ± std (ddof 1)
    assert cells[4] == "90.00 ± 0.00"  # ROC-AUC
    assert cells[5] == "60 ± 14"  # train seconds
    assert cells[6] == "80% 21 ± 1 s, 85% 30 s (1/2), 90% —"
    # 0.91 / 0.60, 60 / 100, and training throughput 100 / 80 samples/s
    assert cells[9] == "acc ×1.517, time ×0.600, samples/s ×1.250 vs ref"
    assert cells[10] == "abc1234" and cells[11] == "Test CPU, 2 cores"
    assert report.compare_lines(main + refs) == [
        "[bench] cifar10-x: fast / ref: acc ×1.517, time ×0.600, samples/s ×1.250"
    ]


def test_runs_on_other_machines_get_rows_of_their_own_and_pool_only_in_the_summary(tmp_path):
    results = tmp_path / "results"
    slow = [_record("fast", 0.90, 100.0, invocation="a", references=["ref"])]
    fast = [_record("fast", 0.92, 40.0, invocation="b", references=["ref"]) for _ in range(2)]
    refs = [_record("ref", 0.60, 50.0, invocation="a", role="reference")]
    for r in fast:
        r["hardware"] = {"cpu": "Other CPU", "cores": 2}
    _write(results, slow + fast + refs)
    lines = report.update_results(results).read_text().splitlines()
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in lines
        if line.startswith("| cifar10-x | fast |")
    ]
    assert [(r[2], r[3], r[5], r[11]) for r in rows] == [
        ("1", "90.00", "100", "Test CPU, 2 cores"),
        ("2", "92.00 ± 0.00", "40 ± 0", "Other CPU, 2 cores"),
    ]
    assert (
        rows[0][9] == "acc ×1.500, time ×2.000, samples/s ×1.000 vs ref"
    )  # beside the reference it ran with
    assert rows[1][9] == "—"  # no reference ran on that machine
    # the README's table pools accuracy over machines, but gives the range of their training times
    readme = report.render_readme_table(slow + fast + refs).splitlines()
    assert readme[2:] == [
        "| `cifar10-x` | cifar10 | 91.33 ± 1.15 | 3 | 40–100 s (2 machines or precisions) |"
    ]


def test_bfloat16_runs_get_rows_of_their_own_and_keep_their_reference(tmp_path):
    results = tmp_path / "results"
    half = [_record("fast", 0.92, 40.0, references=["ref"]) for _ in range(2)]
    for r in half:
        r["precision"] = "bfloat16"  # what "auto" became
    full = [_record("fast", 0.91, 80.0, invocation="b", references=["ref"])]
    full[0]["config"] = {"train": {"precision": "float32"}}
    old = [_record("fast", 0.93, 42.0, invocation="c", references=["ref"])]
    old[0]["config"] = {"train": {"precision": "bfloat16"}}  # a record from before "precision" was kept
    refs = [_record("ref", 0.60, 100.0, role="reference")]
    _write(results, half + full + old + refs)
    lines = report.update_results(results).read_text().splitlines()
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in lines
        if line.startswith("| cifar10-x | fast |")
    ]
    assert [(r[2], r[5], r[11]) for r in rows] == [
        ("3", "41 ± 1", "Test CPU, 2 cores, bfloat16"),
        ("1", "80", "Test CPU, 2 cores"),
    ]
    # the reference ran on the same machine: both rows keep their ratio to it
    assert rows[0][9].startswith("acc ×") and rows[0][9].endswith("vs ref")
    assert "time ×0.800" in rows[1][9]


def test_superseded_records_stay_on_disk_but_out_of_the_tables(tmp_path):
    results = tmp_path / "results"
    _write(results, [_record("fast", 0.90, 50.0)])
    recorder.write_json(
        results / "cifar10-x" / report.SUPERSEDED / "old-fast.json", _record("fast", 0.70, 90.0)
    )
    assert [r["final"]["cifar10"]["accuracy"] for r in report.load_records(results)] == [0.90]
    row = next(line for line in report.update_results(results).read_text().splitlines() if "| fast |" in line)
    assert "90.00" in row and "| 1 |" in row
    # a record marked superseded where it lies is left out the same way
    recorder.write_json(results / "cifar10-x" / "old.json", dict(_record("fast", 0.10, 9.0), superseded=True))
    assert [r["final"]["cifar10"]["accuracy"] for r in report.load_records(results)] == [0.90]


def test_fold_suites_get_a_pooled_row_and_robustness_gets_its_own_table(tmp_path):
    folds = [_record(f"fold{k}", acc, 10.0) for k, acc in enumerate((0.80, 0.90, 0.70))]
    for k, r in enumerate(folds):
        r.update(name="brain-mri-cv", target="brain-mri", overrides=[f"data.fold={k}"])
    fused = _record("attention", 0.9, 10.0)
    fused["robustness"] = {
        "av_digits": {
            "modalities": ["audio", "image"],
            "subsets": [
                {"modalities": ["audio"], "accuracy": {"cifar10": 0.6}},
                {"modalities": ["audio", "image"], "accuracy": {"cifar10": 0.9}},
            ],
            "corruption": {
                "audio": {
                    "corruption": "noise std",
                    "levels": [0.0, 0.5],
                    "accuracy": {"cifar10": [0.9, 0.4]},
                    "weights": {"audio": [0.7, 0.2], "image": [0.3, 0.8]},
                }
            },
        }
    }
    table = report.render_table(folds + [fused])
    pooled = next(line for line in table.splitlines() if "pooled" in line)
    cells = [c.strip() for c in pooled.strip("|").split("|")]
    assert cells[:4] == ["brain-mri-cv", "**all 3 folds pooled**", "3", "80.00 ± 10.00"]
    row = next(line for line in table.splitlines() if line.startswith("| cifar10-x | attention | 1 | audio"))
    assert "audio: 60.00<br>audio + image: 90.00" in row
    assert "audio at noise std 0.5: acc 40.00, weight of audio 0.70 → 0.20" in row
    assert "| fold0 | 1 | audio" not in table  # runs without a robustness evaluation stay out of that table
    # a preset benchmarked only through its fold suite: the README's row pools the folds ...
    readme = report.render_readme_table(folds).splitlines()
    assert readme[2:] == [
        "| `brain-mri` | cifar10 | 80.00 ± 10.00 | 3 (3 folds of brain-mri-cv) | 10 ± 0 s |"
    ]
    # ... and the preset's own runs, once it has some, take that row
    plain = dict(_record("brain-mri", 0.6, 20.0), name="brain-mri", target="brain-mri")
    assert report.render_readme_table([*folds, plain]).splitlines()[2:] == [
        "| `brain-mri` | cifar10 | 60.00 | 1 | 20 s |"
    ]


def test_the_readme_gets_one_row_per_preset_between_its_markers(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    speed = _record("resnet", 0.13, 100.0, target="cifar10-cnn", overrides=["model.image.encoder=resnet"])
    other = dict(_record("imdb-x", 0.91, 30.0, target="imdb-x"), name="imdb-x")
    two_tasks = dict(_record("pair", 0.8, 50.0, target="pair"), name="pair")
    two_tasks["final"]["sentiment"] = {"accuracy": 0.88}
    _write(
        results,
        [
            _record("a", 0.5, 10.0),  # the preset cifar10-x as it ships, two seeds
            _record("a", 0.7, 12.0),
            _record("r", 0.1, 5.0, role="reference"),  # a reference script
            _record("wide", 0.99, 10.0, overrides=["model.fusion_dim=512"]),  # a variant of the preset
            dict(_record("tiny", 0.2, 1.0, target="tiny.toml"), name="tiny"),  # a user's config file
            dict(speed, name="step-overhead"),
            other,
            two_tasks,
        ],
    )
    recorder.write_json(  # a record of the preset's earlier recipe
        results / "imdb-x" / report.SUPERSEDED / "old.json", dict(other, final={"cifar10": {"accuracy": 0.1}})
    )
    readme = tmp_path / "README.md"
    readme.write_text(f"# Tool\n\nintro\n\n{report.README_BEGIN}\nold table\n{report.README_END}\n\nafter\n")
    report.update_results(results)
    text = readme.read_text()
    assert text.startswith(f"# Tool\n\nintro\n\n{report.README_BEGIN}\n| preset | task |")
    assert text.endswith(f"\n{report.README_END}\n\nafter\n") and "old table" not in text
    block = text[text.index(report.README_BEGIN) : text.index(report.README_END)]
    assert block.splitlines()[3:] == [
        "| `cifar10-x` | cifar10 | 60.00 ± 14.14 | 2 | 11 ± 1 s |",
        "| `imdb-x` | cifar10 | 91.00 | 1 | 30 s |",
        "| `pair` | cifar10<br>sentiment | 80.00<br>88.00 | 1 | 50 s |",
    ]
    # a real preset's run whose overrides only set what the preset has counts as the preset's; one that changes it not
    as_ships = _record("94", 0.94, 1600.0, target="cifar10-94", overrides=["train.label_smoothing=0.2"])
    changed = _record("94", 0.5, 900.0, target="cifar10-94", overrides=["train.label_smoothing=0.1"])
    rows = report.render_readme_table([dict(as_ships, name="cifar10-94"), dict(changed, name="cifar10-94")])
    assert rows.splitlines()[2:] == ["| `cifar10-94` | cifar10 | 94.00 | 1 | 1600 s |"]
    # the variant, the reference and the speed runs are in RESULTS.md's table
    assert "| step-overhead | resnet |" in (results.parent / "RESULTS.md").read_text()
    report.update_results(results)
    assert readme.read_text() == text  # regenerating is stable

    for without in ("# Tool without a generated table\n", f"# Only one marker\n\n{report.README_BEGIN}\n"):
        readme.write_text(without)
        report.update_results(results)
        assert readme.read_text() == without
    (tmp_path / "README.md").unlink()
    assert report.update_readme(tmp_path / "README.md", []) is False and not (tmp_path / "README.md").exists()


def test_results_region_is_the_only_part_rewritten(tmp_path):
    results = tmp_path / "results"
    _write(results, [_record("a", 0.5, 10.0)])
    md = tmp_path / "RESULTS.md"
    md.write_text(HAND_WRITTEN_HEAD + f"{report.BEGIN}\nstale\n{report.END}" + HAND_WRITTEN_TAIL)
    report.update_results(results)
    once = md.read_text()
    assert once.startswith(HAND_WRITTEN_HEAD + report.BEGIN + "\n") and once.endswith(
        report.END + HAND_WRITTEN_TAIL
    )
    assert "stale" not in once and "| cifar10-x | a | 1 | 50.00 |" in once
    report.update_results(results)
    assert md.read_text() == once  # regenerating is stable

    md.write_text("# Only hand-written text\n")  # no markers yet: the table is appended, the text kept
    report.update_results(results)
    text = md.read_text()
    assert text.startswith("# Only hand-written text\n\n" + report.BEGIN) and text.rstrip().endswith(
        report.END
    )


def test_records_keep_the_test_calibration_and_results_show_ece_before_and_after(tmp_path):
    epochs = recorder.EpochRecorder(np.zeros((1, 1)), {"cifar10": np.array([0])}, verbose=False)
    cal = {"temperature": 1.5, "ece_before": 0.12, "ece_after": 0.03, "nll_before": 0.9, "nll_after": 0.7}
    evaluated = {"accuracy": 0.8, "macro_f1": 0.8, "roc_auc": 0.9, "calibration": {**cal, "plot": "x.png"}}
    rec = recorder.record_run(
        epochs, kind="omnifuse", seed=0, config={}, batch_size=4, final={"cifar10": evaluated}, wall_seconds=1
    )
    assert (
        rec["final"]["cifar10"]["calibration"] == cal
    )  # the plot and diagram bins are the report's, not kept
    old = _record("cnn", 0.8, 10.0)  # a record from before calibration was recorded: no row
    new = [_record("fast", 0.9, 10.0, sha=s) for s in ("a", "b")]
    for r, (before, after) in zip(new, ((0.12, 0.03), (0.10, 0.05))):
        r["final"]["cifar10"]["calibration"] = {**cal, "ece_before": before, "ece_after": after}
    table = report.render_table([old, *new])
    rows = [
        line for line in table.splitlines() if line.startswith("| cifar10-x | ") and "| cifar10 | " in line
    ]
    assert rows == [
        "| cifar10-x | fast | 2 | cifar10 | 1.500 ± 0.000 | 11.00 ± 1.41 | 4.00 ± 1.41 | 0.9000 ± 0.0000 | 0.7000 ± 0.0000 |"
    ]
    assert "ECE % before" in table
    assert report.render_calibration([old]) == ""
