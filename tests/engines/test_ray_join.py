"""A driver submitted as a Ray job (Slurm: ``ray job submit``) joins the job's cluster at ``RAY_ADDRESS``: Ray refuses
to size an existing cluster (``object_store_memory``), which failed the driver on a real Slurm."""

import ray

from cod_megatron.engines import startup


def test_a_ray_job_driver_joins_the_jobs_cluster_without_sizing_it(monkeypatch):
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(startup, "_OWN_RAY", [])
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    startup.init_ray()
    assert calls == [{"log_to_driver": False, "logging_level": "ERROR"}]
    assert startup._OWN_RAY == []  # not ours: the driver leaves the cluster up for the Slurm job to end


def test_without_a_cluster_the_driver_starts_its_own_small_one(monkeypatch):
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(startup, "_OWN_RAY", [])
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    startup.init_ray()
    assert calls[0]["object_store_memory"] == 200 * 1024**2 and startup._OWN_RAY == [True]
