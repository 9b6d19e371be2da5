"""Teacher log-probs of the student's tokens (issue 35): each domain's samples go to its own teacher, read at the
generated tokens of every turn, chunked and retried without changing a value."""

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from cod_megatron.cod.episode import Episode
from cod_megatron.cod.opd import reverse_kl_metrics
from cod_megatron.engines.embedded import EmbeddedEngine
from cod_megatron.engines.interface import ScoreRequest
from cod_megatron.rollout.teacher_scores import score_request, teacher_logprobs


def tiny_teacher(seed: int) -> EmbeddedEngine:
    cfg = LlamaConfig(
        vocab_size=48, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    engine = EmbeddedEngine(cfg, stop_token_ids=[1])
    engine.update_weights([(n, p.detach()) for n, p in model.named_parameters()], version=0, last=True)
    return engine


def episode(turns, position=0, kind="solve") -> Episode:
    return Episode.from_turns([(o, r, [-9.0] * len(r)) for o, r in turns], pack_id=0, rollout=0, kind=kind,
                              position=position)  # fmt: skip


SAMPLES = [
    ("hidden_key", episode([([3, 4, 5], [6, 7]), ([8, 9], [10, 1])])),  # two turns: an observation between them
    ("code_lock", episode([([2, 2], [11, 12, 13])], kind="update")),
    ("hidden_key", episode([([5], [20])], position=1)),
]


@pytest.fixture(scope="module")
def teachers():
    return {"hidden_key": tiny_teacher(1), "code_lock": tiny_teacher(2)}


def test_each_domains_teacher_scores_its_generated_tokens(teachers):
    got = teacher_logprobs(SAMPLES, teachers, chunk=8)
    for (domain, ep), values in zip(SAMPLES, got, strict=True):
        assert len(values) == len(ep.token_ids)
        full = teachers[domain].score_batch([ScoreRequest([ep.token_ids[0]], ep.token_ids[1:])])[0]
        for pos, (v, g) in enumerate(zip(values, ep.generated, strict=True)):
            assert v == (pytest.approx(full[pos - 1], abs=1e-6) if g else 0.0)  # the observation in turn 2 is 0
    other = teacher_logprobs([(d, e) for d, e in SAMPLES if d == "hidden_key"], {"hidden_key": teachers["code_lock"]},
                             chunk=8)  # fmt: skip
    assert other[0] != got[0]  # the teacher matters: another one scores the same tokens differently


def test_chunking_changes_no_value(teachers):
    whole = teacher_logprobs(SAMPLES, teachers, chunk=8)
    torch.testing.assert_close(
        [torch.tensor(v) for v in teacher_logprobs(SAMPLES, teachers, chunk=1)], [torch.tensor(v) for v in whole],
        atol=1e-6, rtol=0,
    )  # fmt: skip


class Flaky:
    """Fails its first ``n`` calls, reports itself unhealthy until restarted."""

    def __init__(self, engine, n):
        self.engine, self.n, self.restarts, self.ok = engine, n, 0, True

    def score_batch(self, requests):
        if self.n:
            self.n -= 1
            self.ok = False
            raise ConnectionError("teacher died")
        return self.engine.score_batch(requests)

    def health(self):
        return {"ok": self.ok}

    def restart(self):
        self.restarts += 1
        self.ok = True


def test_a_failed_teacher_is_restarted_and_retried_then_named(teachers):
    flaky = Flaky(teachers["code_lock"], n=2)
    got = teacher_logprobs(SAMPLES, {**teachers, "code_lock": flaky}, chunk=8, retries=2)
    assert got == teacher_logprobs(SAMPLES, teachers, chunk=8) and flaky.restarts == 2
    with pytest.raises(RuntimeError, match="teacher of code_lock failed 2 times"):
        teacher_logprobs(SAMPLES, {**teachers, "code_lock": Flaky(teachers["code_lock"], n=5)}, chunk=8, retries=1)
    with pytest.raises(KeyError, match="code_lock"):
        teacher_logprobs(SAMPLES, {"hidden_key": teachers["hidden_key"]}, chunk=8)


def test_an_episode_without_a_prompt_or_generated_token_is_refused():
    with pytest.raises(ValueError, match="no generated token"):
        score_request(episode([([3, 4], [])]))
    with pytest.raises(ValueError, match="no prompt"):
        score_request(episode([([], [3, 4])]))


def test_reverse_kl_by_hand():
    """Sequence sums of (student - teacher) over generated tokens, averaged per domain and per kind and position."""
    samples = [("hidden_key", e) for e in (episode([([3], [4, 5])]), episode([([3, 3], [6])]))]
    samples.append(("code_lock", episode([([2], [7])], position=1, kind="update")))
    teacher = [[0.0, -8.0, -10.0], [0.0, 0.0, -9.5], [0.0, -7.0]]  # the student's are -9.0 at every generated token
    got = reverse_kl_metrics(samples, teacher)
    # hidden_key: (-9 + 8) + (-9 + 10) = 0 and -9 + 9.5 = 0.5 -> 0.25; code_lock: -9 + 7 = -2
    assert got == {
        "opd/code_lock/reverse_kl": -2.0, "opd/code_lock/reverse_kl_update_pos1": -2.0,
        "opd/hidden_key/reverse_kl": 0.25, "opd/hidden_key/reverse_kl_solve_pos0": 0.25,
    }  # fmt: skip
