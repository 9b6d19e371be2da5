"""A teacher's engines behind one ``score_batch`` (issue 35): contiguous shares in parallel, answers in order."""

import pytest

from cod_megatron.engines.interface import ScoreRequest
from cod_megatron.engines.teacher_pool import TeacherPool


class Echo:
    """Scores token t as -t; records what it was sent; unhealthy when told."""

    def __init__(self, ok=True):
        self.seen, self.ok, self.restarts = [], ok, 0

    def score_batch(self, requests):
        self.seen.append([r.token_ids for r in requests])
        return [[-float(t) for t in r.token_ids] for r in requests]

    def health(self):
        return {"ok": self.ok}

    def restart(self):
        self.ok, self.restarts = True, self.restarts + 1


def test_requests_are_spread_over_the_engines_and_answered_in_order():
    engines = [Echo(), Echo()]
    pool = TeacherPool("hidden_key", engines)
    requests = [ScoreRequest([1], [t, t + 1]) for t in range(5)]
    assert pool.score_batch(requests) == [[-float(t), -float(t + 1)] for t in range(5)]
    assert [len(e.seen[0]) for e in engines] == [2, 3]  # contiguous shares
    assert TeacherPool("x", [Echo(), Echo(), Echo()]).score_batch(requests[:1]) == [[0.0, -1.0]]  # idle engines


def test_health_and_restart_cover_every_engine():
    engines = [Echo(), Echo(ok=False)]
    pool = TeacherPool("code_lock", engines)
    assert pool.health()["ok"] is False
    pool.restart()
    assert [e.restarts for e in engines] == [0, 1] and pool.health()["ok"] is True
    with pytest.raises(ValueError, match="no engine"):
        TeacherPool("x", [])
