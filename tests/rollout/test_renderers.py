"""The run's renderer has one owner, built from the config: the domain's word vocabulary, else the tiny tokenizer
with the model family's chat template (the model's own tokenizer arrives with ``model.hf_path``)."""

import cod_recipes
from cod_megatron.cod.tokenization import ChatRenderer, WordRenderer
from cod_megatron.config import apply_overrides
from cod_megatron.rollout.renderers import run_renderer


def test_the_word_model_plays_through_its_domains_vocabulary():
    renderer = run_renderer(cod_recipes.get("debug_cpu"))
    assert isinstance(renderer, WordRenderer) and renderer.vocab_size <= cod_recipes.get("debug_cpu").model.vocab_size


def test_chat_domains_get_the_model_familys_template():
    qwen = run_renderer(apply_overrides(cod_recipes.get("debug_cpu"), ["env.train_domains=frozenlake_obscure"]))
    llama = run_renderer(
        apply_overrides(cod_recipes.get("debug_cpu"), ["env.train_domains=frozenlake_obscure", "model.arch=llama"])
    )
    assert isinstance(qwen, ChatRenderer) and isinstance(llama, ChatRenderer)
    message = [{"role": "user", "content": "hi"}]
    assert "<|im_start|>" in qwen.render_text(message, add_generation_prompt=True)
    assert "<|start_header_id|>" in llama.render_text(message, add_generation_prompt=True)
