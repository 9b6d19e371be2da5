"""Checks the domain tests share: reproducible rows and CLI files, the scripted policies' landmarks, steps on hostile
text that never raise and answer in bounded time. Each domain passes its own sizes and time limits."""

import json
import time

import pytest
from hypothesis import strategies as st

from cod_envs import scripted
from cod_megatron.cod import hints


def rows_are_reproducible(make_rows, n, prefix, seed=3):
    """``make_rows`` gives the same ``n`` rows twice, their first ``prefix`` for fewer, and refuses an unknown split."""
    assert make_rows(n, seed=seed) == make_rows(n, seed=seed)
    assert make_rows(prefix, seed=seed) == make_rows(n, seed=seed)[:prefix]
    with pytest.raises(ValueError):
        make_rows(1, split="dev")


def disjoint_splits(make_rows, *setting, sizes=(300, 300), seed=1):
    """Train and test rows (``sizes``) of one setting whose seeds do not overlap; returns ``(train, test)``."""
    train, test = make_rows(sizes[0], seed, "train", *setting), make_rows(sizes[1], seed, "test", *setting)
    assert not {r["seed"] for r in train} & {r["seed"] for r in test}
    return train, test


def cli_output_is_reproducible(data_main, args, tmp_path):
    """The data CLI run twice with ``args`` writes byte-identical train and test JSONL; returns the first output."""
    for out in ("a", "b"):
        data_main([*args, "--out", str(tmp_path / out)])
    for name in ("train.jsonl", "test.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    return tmp_path / "a"


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def policies_match_the_cod_core(policies):
    """The scripted policies' landmarks restate the CoD core's texts; the domain has the three reference policies."""
    assert (scripted.HINT_START, scripted.HINT_END) == (hints.HINT_START, hints.HINT_END)
    assert scripted.HINT_SECTION == hints.HINT_SECTION_HEADER and scripted.LENGTH_SECTION == hints.LENGTH_SECTION_HEADER
    assert (scripted.PREVIOUS_HINTS, scripted.TRAJECTORY) == (hints.PREVIOUS_HINTS_HEADER, hints.TRAJECTORY_HEADER)
    assert set(policies) == {"oracle", "hint-blind", "random"}


def hostile_texts(adversarial, tokens, *answers):
    """Hypothesis text for the never-raises tests: any text, the domain's ``adversarial`` strings, any text between
    answer tags, the domain's answer-shaped strategies ``answers``, and soups of up to 12 ``tokens``."""
    return st.one_of(
        st.text(max_size=300),
        st.sampled_from(adversarial),
        st.builds(lambda s: f"<answer>{s}</answer>", st.text(max_size=60)),
        *answers,
        st.lists(st.sampled_from(tokens), max_size=12).map("".join),
    )


def steps_never_raise(env, text, seconds, steps=3):
    """``text`` sent up to ``steps`` times (until done): each step answers within ``seconds`` with text feedback and a
    0/1 reward, and the final feedback is text. Returns the step results."""
    results = []
    for _ in range(steps):
        t0 = time.perf_counter()
        res = env.step(text)
        assert time.perf_counter() - t0 < seconds
        assert isinstance(res.feedback, str) and res.reward in (0.0, 1.0)
        results.append(res)
        if res.done:
            break
    assert isinstance(env.final_feedback(), str)
    return results


def format_errors_within(make_env, texts, seconds):
    """Each text, the first step of a fresh env, is a format error answered within ``seconds``."""
    for text in texts:
        env = make_env()
        t0 = time.perf_counter()
        res = env.step(text)
        assert time.perf_counter() - t0 < seconds and res.format_error
