"""The model owns its tokenizer: with ``model.hf_path`` a local HF directory, the run plays through that tokenizer,
its chat template and its end-of-turn token; bad tokenizers are refused at start naming the field; a hub id is
only described (the dry run loads nothing). The HF directories are the tiny tokenizer saved with
``save_pretrained``, so nothing is downloaded."""

import json

import pytest

import cod_recipes
from cod_megatron.cod.tokenization import ChatRenderer, TokenConversation
from cod_megatron.config import ConfigError, apply_overrides
from cod_megatron.infra.cli import handle_common, parser
from cod_megatron.models.tiny_tokenizer import LLAMA3_CHAT_TEMPLATE, QWEN3_CHAT_TEMPLATE, build_tiny_tokenizer
from cod_megatron.rollout.renderers import describe_renderer, run_renderer

TEMPLATES = {"qwen3": QWEN3_CHAT_TEMPLATE, "llama3": LLAMA3_CHAT_TEMPLATE}
STOP = {"qwen3": "<|im_end|>", "llama3": "<|eot_id|>"}
CHAT = [{"role": "system", "content": "You play a game."}, {"role": "user", "content": "Step 1. You are at (0, 0)."}]


def _hf_dir(tmp_path, family, **changes):
    """A local HF tokenizer directory: the tiny tokenizer of ``family`` with ``changes`` set, saved to disk."""
    tok = build_tiny_tokenizer(family)
    for name, value in changes.items():
        setattr(tok, name, value)
    path = tmp_path / f"{family}-hf"
    tok.save_pretrained(path)
    return path


def _cfg(path, *overrides):
    """debug_cpu (HiddenKey: a domain with a word-vocabulary hook) started from the HF directory ``path``."""
    return apply_overrides(cod_recipes.get("debug_cpu"), [f"model.hf_path={path}", "model.vocab_size=1024", *overrides])


@pytest.mark.parametrize("family", TEMPLATES)
def test_saved_directory_keeps_its_chat_template(tmp_path, family):
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(_hf_dir(tmp_path, family)).chat_template == TEMPLATES[family]


@pytest.mark.parametrize("family", TEMPLATES)
def test_hf_path_tokenizer_renders_like_its_own_chat_template(tmp_path, family):
    from transformers import AutoTokenizer

    path = _hf_dir(tmp_path, family)
    renderer = run_renderer(_cfg(path))
    assert isinstance(renderer, ChatRenderer)  # precedence over HiddenKey's word vocabulary
    assert renderer.tokenizer.name_or_path == str(path)
    own = AutoTokenizer.from_pretrained(path)
    kwargs = {"enable_thinking": False} if family == "qwen3" else {}
    assert renderer.chat_template_kwargs == kwargs
    want = own.apply_chat_template(CHAT, tokenize=True, add_generation_prompt=True, return_dict=False, **kwargs)
    assert renderer.encode_prompt(CHAT) == list(want)
    assert renderer.end_of_turn_id == own.convert_tokens_to_ids(STOP[family])


def test_qwen3_template_is_rendered_without_thinking(tmp_path):
    renderer = run_renderer(_cfg(_hf_dir(tmp_path, "qwen3")))
    assert renderer.render_text(CHAT, add_generation_prompt=True).endswith("<think>\n\n</think>\n\n")


def test_end_of_turn_comes_from_the_template_not_a_base_models_eos(tmp_path):
    # Llama 3 base tokenizers name <|end_of_text|> as EOS, yet the chat template closes a turn with <|eot_id|>
    renderer = run_renderer(_cfg(_hf_dir(tmp_path, "llama3", eos_token="<|end_of_text|>")))
    assert renderer.end_of_turn_id == renderer.tokenizer.convert_tokens_to_ids("<|eot_id|>")


def test_eos_is_the_stop_when_the_template_ends_turns_with_plain_text(tmp_path):
    plain = "{% for m in messages %}{{ m.role + ': ' + m.content + '\\n' }}{% endfor %}"
    renderer = run_renderer(_cfg(_hf_dir(tmp_path, "qwen3", chat_template=plain)))
    assert renderer.end_of_turn_id == renderer.tokenizer.convert_tokens_to_ids("<|im_end|>")


@pytest.mark.parametrize("family", TEMPLATES)
def test_incremental_conversation_equals_the_full_render(tmp_path, family):
    renderer = run_renderer(_cfg(_hf_dir(tmp_path, family)))
    conv = TokenConversation.start(renderer, CHAT)
    responses = ["I go <answer>down</answer>", "Now <answer>left</answer>"]
    for k, text in enumerate(responses):
        conv.add_response(renderer.encode(text) + [renderer.end_of_turn_id], text)
        conv.add_observation(f"Step {k + 2}. Moved.")
    assert conv.token_ids == renderer.encode(renderer.render_text(conv.messages, add_generation_prompt=True))


def test_a_vocabulary_larger_than_the_models_is_refused(tmp_path):
    with pytest.raises(ConfigError) as e:
        run_renderer(_cfg(_hf_dir(tmp_path, "qwen3"), "model.vocab_size=256"))
    assert e.value.field == "model.vocab_size" and "514" in e.value.reason


def test_a_tokenizer_without_any_stop_token_is_refused(tmp_path):
    plain = "{% for m in messages %}{{ m.role + ': ' + m.content + '\\n' }}{% endfor %}"
    with pytest.raises(ConfigError) as e:
        run_renderer(_cfg(_hf_dir(tmp_path, "qwen3", chat_template=plain, eos_token=None)))
    assert e.value.field == "model.hf_path" and "stop" in e.value.reason


@pytest.mark.parametrize("template", [None, "{{ raise_exception('this model has no chat format') }}"])
def test_a_chat_template_that_does_not_render_is_refused(tmp_path, template):
    with pytest.raises(ConfigError) as e:
        run_renderer(_cfg(_hf_dir(tmp_path, "qwen3", chat_template=template)))
    assert e.value.field == "model.hf_path" and "chat template" in e.value.reason


def _dry_run(capsys, *argv):
    rc = handle_common(parser("t", "t").parse_args(["--dry-run", *argv]))
    return rc, capsys.readouterr()


def test_dry_run_with_a_hub_id_names_it_and_loads_nothing(capsys):
    rc, out = _dry_run(capsys, "--recipe", "qwen3_8b_cod_8gpu_h100")
    assert rc == 0, out.err
    printed = json.loads(out.out)
    assert printed["tokenizer"] == "Qwen/Qwen3-8B (the model's own, loaded at start)"
    assert printed["config"]["model"]["hf_path"] == "Qwen/Qwen3-8B" and "layout" in printed


def test_dry_run_with_a_local_directory_names_it_and_checks_it(tmp_path, capsys):
    path = _hf_dir(tmp_path, "llama3")
    no_warm_start = "env.warm_start_steps=0"  # a warm start would drop the HF weights: refused with hf_path
    rc, out = _dry_run(capsys, "--recipe", "debug_cpu", f"model.hf_path={path}", "model.vocab_size=1024", no_warm_start)
    assert rc == 0, out.err
    assert json.loads(out.out)["tokenizer"].startswith(f"{path} (the model's own")
    rc, out = _dry_run(capsys, "--recipe", "debug_cpu", f"model.hf_path={path}", no_warm_start)  # 514 tokens > 44
    assert rc == 2 and "model.vocab_size" in out.err


def test_without_hf_path_the_description_names_the_domain_hook_or_the_tiny_tokenizer():
    assert "hidden_key" in describe_renderer(cod_recipes.get("debug_cpu"))
    chat = apply_overrides(cod_recipes.get("debug_cpu"), ["env.train_domains=frozenlake_obscure", "model.arch=llama"])
    assert "tiny" in describe_renderer(chat) and "llama3" in describe_renderer(chat)
