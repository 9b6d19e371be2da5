"""The evaluation CLI: last stdout line is the result JSON; the PNG is written; unknown policies exit 2."""

import json

from cod_megatron.eval.__main__ import main


def test_cli_prints_result_json_and_writes_png(tmp_path, capsys):
    rc = main(
        [
            "--env",
            "hidden_key",
            "--policy",
            "hint-blind",
            "--policy",
            "oracle",
            "--packs",
            "30",
            "--pack-size",
            "4",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in (
        "env",
        "setting",
        "policy",
        "packing",
        "packs",
        "pack_size",
        "seed",
        "reward_by_position",
        "ci95_by_position",
    ):
        assert key in last
    assert last["policy"] == "oracle" and last["packs"] == 30 and len(last["reward_by_position"]) == 4
    assert last["reward_by_position"][1] == 1.0  # the oracle reads the key it wrote
    assert all(lo <= m <= hi for m, (lo, hi) in zip(last["reward_by_position"], last["ci95_by_position"], strict=True))
    assert (tmp_path / "hidden_key_easy_cod.png").stat().st_size > 1000
    assert len(json.loads((tmp_path / "hidden_key_easy_cod.json").read_text())) == 2


def test_ralph_packing_repeats_one_task():
    rc = main(
        ["--env", "hidden_key", "--policy", "oracle", "--packs", "5", "--pack-size", "3", "--packing", "ralph_full"]
    )
    assert rc == 0


def test_a_directory_that_is_not_a_training_checkpoint_and_unknown_policies_are_rejected(tmp_path, capsys):
    assert main(["--env", "hidden_key", "--policy", str(tmp_path), "--packs", "1"]) == 2
    assert "no run_config.json" in capsys.readouterr().err
    assert main(["--env", "hidden_key", "--policy", "nosuch", "--packs", "1"]) == 2
