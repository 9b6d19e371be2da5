"""scripts/summarize_runs.py: per-run rows plus the across-seed spread of each variant (issue 19 item 3)."""

import csv
import importlib.util
import io
import json
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str = "summarize_runs"):
    """A script module from scripts/ (it imports its sibling seed_stats, as when run from there)."""
    if str(ROOT / "scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mean_ci95_by_hand():
    stats = load_script("seed_stats")
    m, lo, hi = stats.mean_ci95([1.0, 2.0, 3.0])  # sd 1, t(0.975, 2) = 4.303: half width 4.303 / sqrt(3)
    assert m == 2.0 and hi - m == pytest.approx(2.4843, abs=1e-4) and m - lo == pytest.approx(hi - m)
    assert stats.mean_ci95([0.5]) == (0.5, 0.5, 0.5)
    # Welch: var/n 1/3 and 1/3, df = (2/3)^2 / (2 (1/3)^2 / 2) = 4 -> t 2.776, half width 2.776 * sqrt(2/3)
    d, lo, hi = stats.diff_ci95([4.0, 5.0, 6.0], [1.0, 2.0, 3.0])
    assert d == 3.0 and hi - d == pytest.approx(2.776 * (2 / 3) ** 0.5) and d - lo == pytest.approx(hi - d)
    xs = [0.0, 1.0] * 20  # 40 values: the normal quantile
    assert stats.mean_ci95(xs)[2] - 0.5 == pytest.approx(1.959964 * statistics.stdev(xs) / 40**0.5)


def curve(gap: float, size: int) -> dict:
    return {"mean": [0.25] + [0.25 + gap] * (size - 1), "ci95": [], "n": 64, "gap": gap, "gap_ci95": [gap - 0.1, gap]}


def fake_run(root: Path, name: str, final_gap: float, train_gap: float) -> None:
    """A run directory as train.py writes it: two evaluations and 12 steps of metrics."""
    (root / name / "eval").mkdir(parents=True)
    for step, gap in ((0, 0.1), (120, final_gap)):
        report = {"step": step} | {
            f"{v}_s{n}": curve(gap if v == "cod" else 0.0, n) for v in ("cod", "hint_blind") for n in (4, 8)
        }
        (root / name / "eval" / f"step_{step}.json").write_text(json.dumps(report))
    rows = [
        {"step": s, "train/loss": 0.0, "rollout/gap": train_gap, "time/train_s": 1.0}
        | {f"rollout/reward_pos_{j}": 0.25 + (train_gap if j else 0.0) for j in range(4)}
        for s in range(1, 13)
    ]
    (root / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_seed_spread_and_csv(tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    gaps = {"reward_to_go_seed1234": 0.45, "reward_to_go_seed1": 0.70, "reward_to_go_seed2": 0.78}
    for name, gap in gaps.items():
        fake_run(runs, name, gap, gap - 0.05)
    fake_run(runs, "outcome_seed1", 0.47, 0.44)  # a single seed: no spread row
    out = tmp_path / "docs" / "summary"
    monkeypatch.setattr(sys, "argv", ["summarize_runs.py", str(runs), "--out", str(out)])
    load_script().main()
    md = out.with_suffix(".md").read_text()
    mean, sd = statistics.mean(gaps.values()), statistics.stdev(gaps.values())
    spread_rows = [line for line in md.splitlines() if line.startswith("| reward_to_go |")]
    assert len(spread_rows) == 1 and "| outcome |" not in md
    cells = [c.strip() for c in spread_rows[0].strip("|").split("|")]
    assert cells[1] == "3"
    # mean 0.643, sd 0.172, t(0.975, 2) = 4.303: half width 0.428
    assert cells[2] == f"+0.64 [+0.22, +1.07] sd {sd:.2f}, range [+0.45, +0.78]" and f"{mean:+.2f}" == "+0.64"
    table = list(csv.DictReader(io.StringIO(out.with_suffix(".csv").read_text())))
    assert {r["run"] for r in table} == set(gaps) | {"outcome_seed1"}
    row = next(r for r in table if r["run"] == "reward_to_go_seed1234")
    assert float(row["gap_s4"]) == pytest.approx(0.45) and float(row["train_gap_last10"]) == pytest.approx(0.40)
    assert json.loads(out.with_suffix(".json").read_text())[0]["run"] in table[0]["run"]


def fake_code_lock_run(root: Path, name: str, combination: dict[int, float], tokens_per_step: int) -> None:
    """A CodeLock run: evaluations whose combination positions (2, 3) score ``combination[step]``."""
    (root / name / "eval").mkdir(parents=True)
    for step, c in combination.items():
        report = {"step": step} | {
            f"{v}_s{n}": {"mean": [1.0, 1.0] + [c if v == "cod" else 0.5] * (n - 2)}
            for v in ("cod", "hint_blind")
            for n in (4, 8)
        }
        (root / name / "eval" / f"step_{step}.json").write_text(json.dumps(report))
    rows = [
        {"step": s, "perf/generated_tokens": tokens_per_step} | {f"rollout/reward_pos_{j}": 1.0 for j in range(4)}
        for s in range(1, max(combination) + 1)
    ]
    (root / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_credit_ablation_pools_seeds_at_equal_steps_and_tokens(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    fake_code_lock_run(runs, "reward_to_go_seed1", {0: 0.5, 20: 0.9, 40: 1.0}, 100)
    fake_code_lock_run(runs, "reward_to_go_seed2", {0: 0.5, 20: 0.7, 40: 1.2}, 100)
    # twice the tokens per step: 4000 tokens (the others' total) are spent by step 20
    fake_code_lock_run(runs, "branches2_seed1", {0: 0.5, 20: 0.6, 40: 0.9}, 200)
    fake_code_lock_run(runs, "branches2_seed2", {0: 0.5, 20: 0.8, 40: 1.1}, 200)
    fake_code_lock_run(runs, "outcome_seed1", {0: 0.5, 20: 0.4}, 100)  # unfinished: left out
    out = tmp_path / "docs" / "ablation"
    monkeypatch.setattr(sys, "argv", ["x", str(runs), "--out", str(out), "--steps", "40"])
    load_script("credit_ablation_summary").main()
    md = out.with_suffix(".md").read_text()
    assert "outcome" not in md and "at 4K generated tokens" in md
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("|")]
    row, versus = {}, {}
    for c in cells:  # a variant's first row is in the per-variant table, its last in the differences
        row.setdefault(c[0], c)
        versus[c[0]] = c
    # seeds 1.0 and 1.2: mean 1.1, sd 0.1414, t(0.975, 1) = 12.706 -> half width 1.2706
    assert row["reward_to_go"][1:3] == ["2", "1.10 [-0.17, 2.37]"]
    assert row["reward_to_go"][7] == "1.10 [-0.17, 2.37] (40)" and row["reward_to_go"][8] == "100"
    assert row["branches2"][2].startswith("1.00 ") and row["branches2"][7].startswith("0.70 [")
    assert row["branches2"][7].endswith("(20)") and row["branches2"][8] == "200"
    assert row["branches2"][6].startswith("1.00 ")  # best evaluation
    # branches2 minus reward_to_go: finals (0.9, 1.1) vs (1.0, 1.2): -0.10, Welch df 2 -> t 4.303 * sqrt(0.02/2 * 2)
    assert versus["branches2"][1] == "2 vs 2" and versus["branches2"][2] == "-0.10 [-0.71, +0.51]"
    table = list(csv.DictReader(io.StringIO(out.with_suffix(".csv").read_text())))
    assert {(r["run"], r["step"], r["generated_tokens"]) for r in table if r["run"] == "branches2_seed1"} == {
        ("branches2_seed1", "0", "0"),
        ("branches2_seed1", "20", "4000"),
        ("branches2_seed1", "40", "8000"),
    }
    assert (out.parent / "ablation_positions.png").exists() and out.with_suffix(".png").exists()


def _packs_file(path: Path, step: int, shown: list[list[float]], hidden: list[list[float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {"step": step, "pack_size": len(r), "variant": variant, "pack": i, "rewards": r}
        for variant, packs in (("cod", shown), ("hint_blind", hidden))
        for i, r in enumerate(packs)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_real_model_seeds_summary_by_hand(tmp_path, monkeypatch):
    """scripts/real_model_seeds_summary.py: the pre-registered hint effect (paired by pack) and gap, per run and
    over seeds."""
    # seed1: pack 0 shown [0,1,1,1] hidden [0,0,0,1]; pack 1 shown [1,1,0,1] hidden [1,1,0,1]
    #   hint effect = mean(1 - 1/3, 2/3 - 2/3) = 1/3; gap = mean(1 - 0, 2/3 - 1) = 1/3; gap hidden = mean(1/3, -1/3) = 0
    _packs_file(
        tmp_path / "seed1/eval/step_60_packs.jsonl", 60, [[0, 1, 1, 1], [1, 1, 0, 1]], [[0, 0, 0, 1], [1, 1, 0, 1]]
    )
    # seed2: hints change nothing: hint effect 0; gap = mean(0, 1) = 1/2
    _packs_file(
        tmp_path / "seed2/eval/step_60_packs.jsonl", 60, [[1, 1, 1, 1], [0, 1, 1, 1]], [[1, 1, 1, 1], [0, 1, 1, 1]]
    )
    (tmp_path / "not_a_seed").mkdir()
    summary = load_script("real_model_seeds_summary")
    rows = summary.collect(tmp_path, 4)
    assert [(r["run"], r["step"]) for r in rows] == [("seed1", 60), ("seed2", 60)]
    assert rows[0]["hint_effect"] == pytest.approx(1 / 3) and rows[1]["hint_effect"] == 0
    assert rows[0]["gap"] == pytest.approx(1 / 3) and rows[0]["gap_hidden"] == pytest.approx(0)
    assert rows[1]["gap"] == pytest.approx(1 / 2)
    assert rows[0]["shown_pos0"] == 0.5 and rows[0]["hidden_pos2"] == 0.0
    # over seeds: mean 1/6, sd sqrt(2)/6, t(0.975, 1) = 12.706: half width 12.706 / 6
    assert "| 60 | 2 | +0.17 [-1.95, +2.28] |" in summary.tables(rows, 4)
    monkeypatch.setattr(sys, "argv", ["x", str(tmp_path), "--out", str(tmp_path / "out/s")])
    summary.main()
    assert {p.suffix for p in (tmp_path / "out").iterdir()} == {".md", ".csv", ".png"}


def test_real_model_seeds_summary_refuses_unpaired_packs(tmp_path):
    _packs_file(tmp_path / "seed1/eval/step_0_packs.jsonl", 0, [[0, 1, 1, 1], [1, 1, 0, 1]], [[0, 0, 0, 1]])
    with pytest.raises(ValueError, match="same packs"):
        load_script("real_model_seeds_summary").collect(tmp_path, 4)


def _suite_run(root: Path, name: str, finals: dict[str, list[float]], steps: int = 20, tokens: int = 100) -> None:
    """A run evaluated on suites as the in-loop evaluator writes them: step 0 all 0.5, step ``steps`` ``finals``;
    ``tokens`` and 3 * ``tokens`` generated tokens on alternate training steps."""
    (root / name / "eval").mkdir(parents=True)
    rows = [{"step": s, "perf/generated_tokens": tokens * (1 + 2 * (s % 2))} for s in range(1, steps + 1)]
    (root / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for step in (0, steps):
        report: dict = {"step": step, "packs_file": f"step_{step}_packs.jsonl"}
        for suite, means in finals.items():
            domain = suite.split("_s")[0]
            report[suite] = {
                "suite": {"name": suite, "domain": domain, "pack_size": len(means)},
                "pooled": {"mean": means if step else [0.5] * len(means)},
                "by_rollout": [],
            }
        (root / name / "eval" / f"step_{step}.json").write_text(json.dumps(report))


def test_mixture_evidence_summary_by_hand(tmp_path, monkeypatch):
    """scripts/mixture_evidence_summary.py: HiddenKey reads positions >= 1, CodeLock its combination positions >= 2;
    arms pooled over seeds, each minus mix (Welch); unfinished runs left out."""
    hk, cl = "hidden_key", "code_lock_s8"
    _suite_run(tmp_path, "mix_seed1", {hk: [0.0, 1.0, 0.5, 0.0], cl: [1.0, 1.0] + [0.5] * 6})
    _suite_run(tmp_path, "mix_seed2", {hk: [0.0, 0.5, 0.5, 0.5], cl: [1.0, 1.0] + [0.7] * 6})
    _suite_run(tmp_path, "hidden_key_seed1", {hk: [0.0, 1.0, 1.0, 1.0], cl: [0.0] * 8}, tokens=50)
    _suite_run(tmp_path, "hidden_key_seed2", {hk: [0.0, 0.8, 0.8, 0.8], cl: [0.0] * 8}, tokens=40)
    _suite_run(tmp_path, "opd_seed1", {hk: [0.0] * 4, cl: [0.0] * 8}, steps=10)  # unfinished at 20
    summary = load_script("mixture_evidence_summary")
    rows = summary.collect(tmp_path, 20)
    assert {r["run"] for r in rows} == {"mix_seed1", "mix_seed2", "hidden_key_seed1", "hidden_key_seed2"}
    final = {(r["run"], r["suite"]): r for r in rows if r["step"] == 20}
    assert final["mix_seed1", hk]["later"] == 0.5 and final["mix_seed2", hk]["later"] == 0.5
    assert final["mix_seed1", cl]["later"] == 0.5 and final["mix_seed1", cl]["pos0"] == 1.0
    md = "\n".join(summary.tables(rows, 20))
    # hidden_key arm later: 1.0, 0.8 -> mean 0.9, sd 0.1414, t(0.975, 1) 12.706 -> half width 1.27; mix 0.5, 0.5
    assert (
        "| hidden_key | 2 | 0.90 [-0.37, 2.17] | 0.00 [0.00, 0.00] | +0.90 [-0.37, +2.17] | +0.40 [-0.87, +1.67] |"
        in md
    )
    # code_lock_s8: later 0.5 and 0.7, position 0 1.0: gaps -0.5 and -0.3
    assert "| mix | 2 | 0.60 [-0.67, 1.87] | 1.00 [1.00, 1.00] | -0.40 [-1.67, +0.87] |  |" in md
    assert "| mix | 2 | 200 |" in md and "| hidden_key | 2 | 90 |" in md  # tokens per step: (100 + 300) / 2; 100, 80
    monkeypatch.setattr(sys, "argv", ["x", str(tmp_path), "--out", str(tmp_path / "out/m"), "--steps", "20"])
    summary.main()
    assert {p.suffix for p in (tmp_path / "out").iterdir()} == {".md", ".csv", ".png"}
