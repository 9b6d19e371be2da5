"""The run's renderer has one owner, built from the config: the domain's word vocabulary, else the tiny tokenizer
with the model family's chat template (the model's own tokenizer arrives with ``model.hf_path``)."""

import cod_recipes
from cod_megatron.cod.tokenization import ChatRenderer, WordRenderer
from cod_megatron.config import apply_overrides
from cod_megatron.rollout.renderers import run_renderer
from tests.rollout.recipe_play import play_oracle_pack


def test_the_word_model_plays_through_its_domains_vocabulary():
    cfg = cod_recipes.get("debug_cpu")
    renderer = run_renderer(cfg)
    assert isinstance(renderer, WordRenderer) and renderer.vocab_size <= cfg.model.vocab_size
    # plays a HiddenKey pack through it: every prompt and answer word is a word of the vocabulary (no <unk>)
    lc, _ = play_oracle_pack(cfg, "hidden_key", pack_seed=5, oracle_seed=1)
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
