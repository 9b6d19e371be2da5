"""The run's renderer has one owner, built from the config: the domain's word vocabulary, else the tiny tokenizer
with the model family's chat template (the model's own tokenizer arrives with ``model.hf_path``)."""

import cod_recipes
from cod_envs import registry
from cod_megatron.cod.episode import Pack, Task
from cod_megatron.cod.tokenization import ChatRenderer, WordRenderer
from cod_megatron.config import apply_overrides
from cod_megatron.engines.interface import SamplingParams, TextPolicyEngine
from cod_megatron.rollout.renderers import run_renderer
from cod_megatron.rollout.token_play import run_token_lifecycle


def test_the_word_model_plays_through_its_domains_vocabulary():
    cfg = cod_recipes.get("debug_cpu")
    renderer = run_renderer(cfg)
    assert isinstance(renderer, WordRenderer) and renderer.vocab_size <= cfg.model.vocab_size
    # plays a HiddenKey pack through it: every prompt and answer word is a word of the vocabulary (no <unk>)
    domain = registry.load("hidden_key")
    rows = domain.make_rows(cfg.rollout.pack_size, 0, "train", cfg.env.setting)
    tasks = tuple(Task(taskset_id="hidden_key", row=i, data=r) for i, r in enumerate(rows))
    pack = Pack(pack_id=0, seed=5, tasks=tasks)
    engine = TextPolicyEngine(domain.policies["oracle"](1), renderer.encode, renderer.end_of_turn_id)
    params = SamplingParams(max_new_tokens=cfg.rollout.max_response_tokens, seed=0)
    lc, _ = run_token_lifecycle(domain.env, pack, 0, engine=engine, renderer=renderer, params=params)
    assert len(lc.solves()) == cfg.rollout.pack_size and sum(lc.solve_rewards()) > 0
    unknown = renderer.encode("<unk>")[0]
    assert all(unknown not in e.token_ids and max(e.token_ids) < cfg.model.vocab_size for e in lc.episodes)


def test_chat_domains_get_the_model_familys_template():
    qwen = run_renderer(apply_overrides(cod_recipes.get("debug_cpu"), ["env.train_domains=frozenlake_obscure"]))
    llama = run_renderer(
        apply_overrides(cod_recipes.get("debug_cpu"), ["env.train_domains=frozenlake_obscure", "model.arch=llama"])
    )
    assert isinstance(qwen, ChatRenderer) and isinstance(llama, ChatRenderer)
    message = [{"role": "user", "content": "hi"}]
    assert "<|im_start|>" in qwen.render_text(message, add_generation_prompt=True)
    assert "<|start_header_id|>" in llama.render_text(message, add_generation_prompt=True)
