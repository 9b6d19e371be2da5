"""Distillation teachers as SGLang servers (issue 35): a teacher's ``parallel.teacher_engines`` servers launched from
its own HF directory (the stand-in program on CPU, which loads that model), its batch spread over them, scores equal
to a direct forward of the teacher, nothing left running after shutdown. About a minute (two server starts)."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

import cod_recipes
from cod_megatron.config import apply_overrides, finalize
from cod_megatron.config.teachers import Teacher
from cod_megatron.engines.interface import ScoreRequest
from cod_megatron.engines.startup import shutdown_engines, start_sglang_teachers
from tests.engines.sglang_standin import COMMAND
from tests.engines.test_sglang_actor import wait_dead

pytestmark = pytest.mark.slow

REQUESTS = [ScoreRequest([3, 4, 5], [6, 7]), ScoreRequest([9], [10, 11, 12]), ScoreRequest([2, 2], [1])]


def save_teacher(path, seed: int) -> AutoModelForCausalLM:
    cfg = LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    model.save_pretrained(path)
    return model


def direct(model, r: ScoreRequest) -> list[float]:
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([r.prompt_ids + r.token_ids])).logits[0].float(), -1)
    return [logp[len(r.prompt_ids) - 1 + i, t].item() for i, t in enumerate(r.token_ids)]


def test_each_teacher_scores_on_its_own_servers(tmp_path):
    models = {"hidden_key": save_teacher(tmp_path / "hidden_key", seed=1)}  # one teacher, two servers (CI time)
    cfg = apply_overrides(cod_recipes.get("debug_cpu_mix"), ["parallel.teacher_engines=2"])
    layout = finalize(cfg)  # a CPU config refuses rollout.engine=sglang; the stand-in is what makes it run here
    cfg = apply_overrides(
        cfg,
        [
            "rollout.engine=sglang", f"rollout.sglang_command={json.dumps(COMMAND)}",
            "rollout.sglang_startup_timeout_s=120", f"run.output_dir={tmp_path / 'run'}",
        ],
    )  # fmt: skip
    pools = start_sglang_teachers(cfg, layout, [Teacher(d, str(tmp_path / d)) for d in models])
    try:
        assert sorted(pools) == ["hidden_key"]
        for domain, model in models.items():
            pool = pools[domain]
            assert len(pool.engines) == 2 and pool.health()["ok"]
            got = pool.score_batch(REQUESTS)  # 3 requests over 2 servers: 1 + 2
            for r, values in zip(REQUESTS, got, strict=True):
                assert values == pytest.approx(direct(model, r), abs=1e-5)
        pids = [e._call("poll")["pid"] for p in pools.values() for e in p.engines]
    finally:
        shutdown_engines(list(pools.values()))
    assert len(pids) == 2 and all(wait_dead(pid) for pid in pids)
