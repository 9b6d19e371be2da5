"""Distillation teachers (issue 35): a checkpoint of this project in a scoring engine; its scores equal a direct
Megatron forward of the checkpoint; a teacher whose ids are not the student's, or a path that is no model, is refused
naming its field."""

import pytest
import torch

from cod_megatron.cod.episode import Episode
from cod_megatron.config import ConfigError, finalize
from cod_megatron.config.teachers import Teacher
from cod_megatron.data.episodes import pack_episodes
from cod_megatron.engines.interface import ScoreRequest
from cod_megatron.loop.checkpoint_engine import load_run_config
from cod_megatron.loop.teachers import teacher_engine, token_id_mismatch
from cod_megatron.rollout.renderers import renderer_for
from tests.dist import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def teacher_ckpt(word_teachers):
    """The HiddenKey teacher (the mixture's word vocabulary)."""
    return word_teachers["hidden_key"]


STUDENT = ["hidden_key", "code_lock"]
"""The student's vocabulary domains: the mixture's, as the teachers'."""


def megatron_logprobs(ckpt, requests: list[ScoreRequest]) -> list[list[float]]:
    """The reference: the checkpoint loaded by the trainer, the log-probs of each request's tokens by its forward."""
    from cod_megatron.loop.run_parts import start_trainer
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed

    cfg = load_run_config(ckpt)
    cfg.checkpoint.load, cfg.env.warm_start_steps, cfg.run.device = str(ckpt), 0, "cpu"
    layout = finalize(cfg)
    init_distributed(layout, master_port=free_port())
    try:
        trainer = start_trainer(cfg, layout, renderer_for(STUDENT), with_optimizer=False)
        episodes = [
            Episode(
                pack_id=i,
                rollout=0,
                kind="solve",
                position=0,
                token_ids=r.prompt_ids + r.token_ids,
                generated=[False] * len(r.prompt_ids) + [True] * len(r.token_ids),
                rollout_logprobs=[0.0] * (len(r.prompt_ids) + len(r.token_ids)),
                turn_ids=[0] * (len(r.prompt_ids) + len(r.token_ids)),
                advantage=0.0,
            )  # fmt: skip
            for i, r in enumerate(requests)
        ]
        ranks, _ = pack_episodes(episodes, budget=4096, dp=1)
        (batch,) = ranks[0]
        (logp,) = trainer.compute_logprobs([batch])
    finally:
        destroy_distributed()
    picked = logp[batch.loss_mask.bool()].tolist()  # the packed episodes' generated tokens, in order
    out = []
    for r in requests:
        out.append(picked[: len(r.token_ids)])
        picked = picked[len(r.token_ids) :]
    return out


def test_a_checkpoint_teacher_scores_as_its_megatron_forward(teacher_ckpt):
    student = renderer_for(STUDENT)
    engine = teacher_engine(Teacher("hidden_key", str(teacher_ckpt)), student)
    prompt = student.encode("<bos> the key is red . what is the key ?")
    requests = [ScoreRequest(prompt, student.encode("red <eos>")), ScoreRequest(prompt[:5], student.encode("blue"))]
    scores = engine.score_batch(requests)
    reference = megatron_logprobs(teacher_ckpt, requests)
    for got, want in zip(scores, reference, strict=True):
        torch.testing.assert_close(torch.tensor(got), torch.tensor(want), atol=1e-5, rtol=0)  # fp32 rounding


def test_a_teacher_with_other_ids_or_no_model_is_refused(teacher_ckpt, tmp_path):
    alone = renderer_for("hidden_key")  # HiddenKey's own vocabulary: fewer words than the mixture's the teacher reads
    assert token_id_mismatch(renderer_for(STUDENT), renderer_for(STUDENT)) is None
    assert "word vocabularies differ" in token_id_mismatch(alone, renderer_for(STUDENT))
    with pytest.raises(ConfigError) as err:
        teacher_engine(Teacher("hidden_key", str(teacher_ckpt)), alone, field="distill.teachers[0]")
    assert err.value.field == "distill.teachers[0]" and "reads other token ids" in str(err.value)
    with pytest.raises(ConfigError) as err:
        teacher_engine(Teacher("hidden_key", str(tmp_path)), alone, field="distill.teachers[1]")
    assert err.value.field == "distill.teachers[1]" and "neither a checkpoint" in str(err.value)
