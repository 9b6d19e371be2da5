"""Scoring given tokens (a teacher's engine, cod.md 8): the embedded engine against a direct forward, the SGLang body
and answers against the pinned version's fixture, and the client end to end through the stand-in server."""

import json
import os

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from cod_megatron.engines.embedded import EmbeddedEngine
from cod_megatron.engines.interface import EngineRequest, SamplingParams, ScoreRequest, ScoringEngine
from cod_megatron.engines.sglang.client import SGLangEngine
from cod_megatron.engines.sglang.protocol import SGLangError, parse_scores, score_body
from tests.engines.sglang_standin import SGLangStandIn
from tests.engines.test_sglang_engine import Recorder, answers_from, fixture

REQUESTS = [
    ScoreRequest(prompt_ids=[5, 9, 2, 31], token_ids=[7, 7, 40, 3, 1]),
    ScoreRequest(prompt_ids=[11], token_ids=[2]),
    ScoreRequest(prompt_ids=[4, 8, 15, 16, 23, 42, 6, 1, 9], token_ids=[33, 12]),
]


@pytest.fixture(scope="module")
def teacher():
    """A tiny random Llama and an embedded engine holding the same weights."""
    cfg = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(7)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    engine = EmbeddedEngine(cfg, stop_token_ids=[1])
    engine.update_weights([(n, p.detach()) for n, p in model.named_parameters()], version=0, last=True)
    return model, engine


def direct(model, r: ScoreRequest) -> list[float]:
    """The reference: one unpadded forward of prompt + tokens, the log-prob of each token at the position before it."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([r.prompt_ids + r.token_ids])).logits[0]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    p = len(r.prompt_ids)
    return [logprobs[p - 1 + i, t].item() for i, t in enumerate(r.token_ids)]


def test_embedded_scores_equal_a_direct_forward_of_the_teacher(teacher):
    model, engine = teacher
    assert isinstance(engine, ScoringEngine)
    got = engine.score_batch(REQUESTS)  # one right-padded batch of three lengths
    for r, values in zip(REQUESTS, got, strict=True):
        assert len(values) == len(r.token_ids)
        assert values == pytest.approx(direct(model, r), abs=1e-5)  # fp32 rounding of a padded batch
    assert engine.score_batch([REQUESTS[2]])[0] == pytest.approx(got[2], abs=1e-5)  # alone as in a batch


def test_scores_are_the_models_distribution_not_a_sampling_temperature(teacher):
    """Every position's log-probs over the vocabulary sum to 1 (temperature 1): scoring every token id at one
    position gives a distribution."""
    _, engine = teacher
    prompt = [3, 14, 15]
    values = [engine.score_batch([ScoreRequest(prompt, [t])])[0][0] for t in range(64)]
    assert sum(torch.tensor(values).exp().tolist()) == pytest.approx(1.0, abs=1e-5)


def test_embedded_scoring_refuses_without_weights_or_prompt(teacher):
    _, engine = teacher
    with pytest.raises(ValueError, match="empty prompt"):
        engine.score_batch([ScoreRequest([], [1, 2])])
    fresh = EmbeddedEngine(engine.model.config, stop_token_ids=[1])
    with pytest.raises(RuntimeError, match="no weights"):
        fresh.score_batch(REQUESTS)
    assert engine.score_batch([]) == []


# ---- SGLang 0.5.23 ------------------------------------------------------------------------------------------------

FIXTURE_REQUESTS = [
    ScoreRequest(prompt_ids=[151644, 872, 198], token_ids=[40, 1079, 151645]),
    ScoreRequest(prompt_ids=[151644, 77091], token_ids=[9707, 11]),
]


def test_score_body_matches_the_fixture():
    assert score_body(FIXTURE_REQUESTS) == fixture("score")["request"]


def test_parse_scores_reads_the_fixture():
    body = fixture("score")["response"]["body"]
    assert parse_scores(body[0], FIXTURE_REQUESTS[0]) == [-0.5, -1.25, -0.0625]
    assert parse_scores(body[1], FIXTURE_REQUESTS[1]) == [-3.0, -0.75]


def test_parse_scores_rejects_bad_answers():
    good = fixture("score")["response"]["body"][0]
    r = FIXTURE_REQUESTS[0]

    def edit(**meta):
        item = json.loads(json.dumps(good))
        item["meta_info"].update(meta)
        return item

    with pytest.raises(SGLangError, match="aborted: oom"):
        parse_scores(edit(finish_reason={"type": "abort", "message": "oom"}), r)
    with pytest.raises(SGLangError, match="no input_token_logprobs"):
        parse_scores(edit(input_token_logprobs=None), r)
    entries = good["meta_info"]["input_token_logprobs"]
    with pytest.raises(SGLangError, match="expected one more"):
        parse_scores(edit(input_token_logprobs=entries[1:]), r)  # started at the first response token: one short
    with pytest.raises(SGLangError, match="not the request's"):
        parse_scores(edit(input_token_logprobs=[entries[0], [-0.5, 41, None], *entries[2:]]), r)
    with pytest.raises(SGLangError, match="no log-prob"):
        parse_scores(edit(input_token_logprobs=[entries[0], [None, 40, None], *entries[2:]]), r)


def test_the_client_scores_against_the_fixture_answer():
    rec = Recorder(answers_from("score"))
    try:
        got = SGLangEngine(rec.url).score_batch(FIXTURE_REQUESTS)
        assert got == [[-0.5, -1.25, -0.0625], [-3.0, -0.75]]
        assert rec.sent[0][2] == fixture("score")["request"]
    finally:
        rec.close()


def test_the_client_scores_through_the_standin_as_the_engine_does(teacher):
    model, engine = teacher
    with SGLangStandIn(engine) as server:
        got = SGLangEngine(server.url).score_batch(REQUESTS)
        path, body = server.calls[-1]
    assert path == "/generate" and body["logprob_start_len"] == [3, 0, 8]
    assert got == engine.score_batch(REQUESTS)
    for r, values in zip(REQUESTS, got, strict=True):
        assert values == pytest.approx(direct(model, r), abs=1e-5)


@pytest.mark.sglang
@pytest.mark.skipif(
    not os.environ.get("COD_SGLANG_URL"),
    reason="set COD_SGLANG_URL to a running SGLang server (launched with --skip-tokenizer-init) to score on it",
)
def test_real_server_scores_its_own_samples_at_their_sampling_log_probs():
    """At temperature 1 the log-probs a server reports for its own samples are the ones scoring gives them back."""
    engine = SGLangEngine(os.environ["COD_SGLANG_URL"], timeout_s=120)
    prompts = [[1, 2, 3, 4], [5, 6]]
    gens = engine.generate_batch(
        [EngineRequest(p, SamplingParams(max_new_tokens=8, seed=i)) for i, p in enumerate(prompts)]
    )
    scored = engine.score_batch([ScoreRequest(p, g.token_ids) for p, g in zip(prompts, gens, strict=True)])
    for g, values in zip(gens, scored, strict=True):
        assert values == pytest.approx(g.logprobs, abs=2e-2)  # prefill vs decode kernels, bf16
