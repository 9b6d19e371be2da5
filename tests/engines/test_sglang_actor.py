"""SGLang engines through ``start_engines``: actors owning server processes (the stand-in program on CPU), GPU/argv
planning, restart of a dead server or actor, nothing left running after shutdown, and the config fields."""

import json
import os
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

import cod_recipes
from cod_megatron.config import ConfigError, apply_overrides, finalize
from cod_megatron.engines.interface import EngineRequest, SamplingParams
from cod_megatron.engines.sglang.actor import _alive, plan_gpus, server_argv
from cod_megatron.engines.sglang.ipc import serializer_for
from cod_megatron.engines.sglang.protocol import HttpClient
from cod_megatron.engines.sglang.ray_engine import SGLangRayEngine
from cod_megatron.engines.sglang.server import SGLangServerConfig
from cod_megatron.engines.startup import shutdown_engines, start_engines
from tests.engines.sglang_standin import COMMAND

STANDIN = COMMAND


# ---- pure planning ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "gpu_ids,visible,base,narrowed",
    [
        (["2", "3"], "2,3", 0, None),  # Ray's default: the actor sees exactly its GPUs
        ([4, 5], None, 4, None),  # RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES on a node with all GPUs visible
        (["6", "7"], "4,5,6,7", 2, None),  # node-level mask: the local ordinal, not the physical id (slime#1326)
        (["3", "1"], None, 0, "1,3"),  # not contiguous: narrow the server to exactly its GPUs
    ],
)
def test_gpu_plan_gives_the_local_base_gpu_id(gpu_ids, visible, base, narrowed):
    assert plan_gpus(gpu_ids, 2, visible) == (base, narrowed)


def test_gpu_plan_refuses_a_bundle_of_the_wrong_size():
    with pytest.raises(ValueError, match="tp_size=2 got 1 GPU"):
        plan_gpus(["0"], 2, None)


def test_argv_of_a_two_gpu_engine_carries_tp_and_base_gpu_id():
    base, visible = plan_gpus(["6", "7"], 2, "4,5,6,7")
    cfg = SGLangServerConfig(model_path="/m", tp_size=2, base_gpu_id=base, port=31000, mem_fraction_static=0.7)
    argv = server_argv(cfg)
    assert argv[1:3] == ["-m", "sglang.launch_server"] and visible is None
    pairs = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert pairs["--tp-size"] == "2" and pairs["--base-gpu-id"] == "2" and pairs["--mem-fraction-static"] == "0.7"
    assert server_argv(cfg, ["/venv/bin/python", "-m", "x"])[:4] == ["/venv/bin/python", "-m", "x", "--model-path"]


# ---- config -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "item,field",
    [
        ("rollout.sglang_mem_fraction_static=1.5", "rollout.sglang_mem_fraction_static"),
        ("rollout.sglang_mem_fraction_static=0", "rollout.sglang_mem_fraction_static"),
        ("rollout.sglang_router_url=localhost:30000", "rollout.sglang_router_url"),
        ('rollout.sglang_extra_args=["--port","1"]', "rollout.sglang_extra_args"),
        ("rollout.sglang_extra_args=--tp-size=2", "rollout.sglang_extra_args"),
        ('rollout.sglang_command=["python",""]', "rollout.sglang_command"),
        ("rollout.sglang_startup_timeout_s=0", "rollout.sglang_startup_timeout_s"),
    ],
)
def test_bad_sglang_field_fails_with_dotted_name(item, field):
    cfg = apply_overrides(cod_recipes.get("qwen3_8b_cod_8gpu_h100"), [item])
    with pytest.raises(ConfigError) as e:
        finalize(cfg)
    assert e.value.field == field


def test_good_sglang_fields_validate():
    cfg = apply_overrides(
        cod_recipes.get("qwen3_8b_cod_8gpu_h100"),
        [
            "rollout.sglang_mem_fraction_static=0.8",
            "rollout.sglang_router_url=http://10.0.0.1:30000",
            'rollout.sglang_extra_args=["--load-format","dummy","--chunked-prefill-size=4096"]',
        ],
    )
    finalize(cfg)
    assert cfg.rollout.sglang_extra_args == ["--load-format", "dummy", "--chunked-prefill-size=4096"]


# ---- end to end against the stand-in program ----------------------------------------------------------------------


class FakeRouter:
    """sglang-router's ``/workers`` API (registration only), in a thread."""

    def __init__(self):
        self.workers: dict[str, str] = {}
        router = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802
                url = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["url"]
                wid = str(uuid.uuid4())
                router.workers[wid] = url
                self._answer(202, {"status": "accepted", "worker_id": wid, "url": url})

            def do_GET(self):  # noqa: N802
                ws = [{"id": k, "url": u, "is_healthy": True} for k, u in router.workers.items()]
                self._answer(200, {"workers": ws, "total": len(ws)})

            def do_DELETE(self):  # noqa: N802
                wid = self.path.rsplit("/", 1)[1]
                if router.workers.pop(wid, None) is None:
                    self._answer(404, {"error": "not found"})
                else:
                    self._answer(202, {"status": "accepted", "worker_id": wid})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def urls(self):
        return sorted(self.workers.values())

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def router():
    r = FakeRouter()
    yield r
    r.close()


def sglang_cfg(tmp_path, backend, engines, router_url):
    cfg = apply_overrides(
        cod_recipes.get("debug_cpu"),
        [f"parallel.engines={engines}", "parallel.colocated=false", "parallel.gpus_per_node=3"],
    )
    layout = finalize(cfg)  # a CPU config refuses rollout.engine=sglang; the stand-in is what makes it run here
    overrides = [
        "rollout.engine=sglang",
        f"rollout.backend={backend}",
        f"rollout.sglang_command={json.dumps(STANDIN)}",
        "rollout.sglang_model_path=/models/standin",
        f"rollout.sglang_router_url={router_url}",
        "rollout.sglang_startup_timeout_s=60",
        f"run.output_dir={tmp_path}",
    ]
    return apply_overrides(cfg, overrides), layout


def requests_():
    return [EngineRequest([5, 6, 7], SamplingParams(max_new_tokens=3, seed=1)), EngineRequest([40], SamplingParams(2))]


def kwargs():
    # the colocated transport with the project serializer (CPU tensors through shared memory on this machine)
    return {"stop_token_ids": [99], "transport": "tensor", "serializer": serializer_for(1), "hf_config": None}


def wait_dead(pid, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def check_serves(engine, version=None):
    gens = engine.generate_batch(requests_())
    assert [g.token_ids for g in gens] == [[8, 9, 10], [41, 42]] and gens[0].logprobs == [-0.5] * 3
    if version is not None:
        bucket = [("w", torch.ones(2, 2)), ("b", torch.zeros(3))]
        engine.update_weights(bucket[:1], version=version, last=False)
        engine.update_weights(bucket[1:], version=version, last=True)
        assert engine.health()["weight_version"] == version


def test_inprocess_sglang_engine_is_launched_restarted_and_ended(tmp_path, router):
    cfg, layout = sglang_cfg(tmp_path, "inprocess", 1, router.url)
    (engine,) = start_engines(cfg, layout, kwargs())
    pids = []
    try:
        assert isinstance(engine, SGLangRayEngine) and router.urls() == [engine.url]
        info = HttpClient(engine.url).request("GET", "/server_info")
        assert info["model_path"] == "/models/standin" and info["tp_size"] == 1 and info["base_gpu_id"] == 0
        assert "--enable-deterministic-inference" in info["other_args"]  # SGLang flags reach the program
        check_serves(engine, version=3)
        pids.append(engine.server_state()["pid"])
        os.kill(pids[-1], signal.SIGKILL)
        assert wait_dead(pids[-1])
        h = engine.health()
        assert h["ok"] is False and "exited with code -9" in h["error"]
        old = engine.url
        engine.restart()
        assert engine.url != old and router.urls() == [engine.url] and engine.restarts == 1
        assert engine.health() == {
            "ok": True,
            "weight_version": -1,  # a fresh server: the manager's on_restart must sync it again
            "server_weight_version": "default",
            "released": False,
            "url": engine.url,
        }
        check_serves(engine, version=4)  # the client kept its transport (serializer) across the restart
        pids.append(engine.server_state()["pid"])
        logs = list((tmp_path / "sglang").glob("engine0.*.log"))
        assert len(logs) == 2  # one log per launch
    finally:
        shutdown_engines([engine])
    assert all(wait_dead(p, 5) for p in pids) and router.urls() == []


@pytest.mark.slow
def test_ray_sglang_engines_serve_heal_and_leave_nothing_running(tmp_path, router):
    import ray

    cfg, layout = sglang_cfg(tmp_path, "ray", 2, router.url)
    engines = start_engines(cfg, layout, kwargs())
    pids = []
    try:
        assert len(engines) == 2 and all(isinstance(e, SGLangRayEngine) for e in engines)
        assert router.urls() == sorted(e.url for e in engines) and engines[0].url != engines[1].url
        for e in engines:
            check_serves(e, version=5)
        pids = [e.server_state()["pid"] for e in engines]

        # a server dies, its actor lives: health says so, restart brings a new server
        os.kill(pids[1], signal.SIGKILL)
        assert wait_dead(pids[1])
        h = engines[1].health()
        assert h["ok"] is False and "exited with code -9" in h["error"]
        engines[1].restart()
        assert engines[1].health()["ok"] is True and engines[1].health()["weight_version"] == -1
        assert engines[0].health()["weight_version"] == 5
        check_serves(engines[1])
        pids.append(engines[1].server_state()["pid"])

        # an actor is killed: its server goes with it (parent-death signal), restart replaces both
        ray.kill(engines[0].actor)
        assert wait_dead(pids[0]), "the server outlived its actor"
        h = engines[0].health()
        assert h["ok"] is False and "actor" in h["error"]
        engines[0].restart()
        check_serves(engines[0])
        pids.append(engines[0].server_state()["pid"])
        assert router.urls() == sorted(e.url for e in engines)
    finally:
        shutdown_engines(engines)
    assert not ray.is_initialized()
    assert [p for p in pids if not wait_dead(p, 5)] == [] and router.urls() == []


def test_a_server_that_dies_while_starting_fails_start_engines_with_its_log(tmp_path, router):
    cfg, layout = sglang_cfg(tmp_path, "inprocess", 1, router.url)
    cfg.rollout.sglang_command = [sys.executable, "-c", "import sys; print('no GPU here'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match=r"(?s)exited with code 3 while starting.*no GPU here"):
        start_engines(cfg, layout, kwargs())
    assert router.urls() == []


def test_engines_loading_another_tokenizer_than_the_trainers_are_refused_before_launch(tmp_path):
    from cod_megatron.models.model_tokenizer import tokenizer_mismatch
    from cod_megatron.models.source import model_source
    from cod_megatron.models.tiny_tokenizer import save_tiny_tokenizer

    qwen, llama = save_tiny_tokenizer(tmp_path / "qwen", "qwen3"), save_tiny_tokenizer(tmp_path / "llama", "llama3")
    copy = save_tiny_tokenizer(tmp_path / "qwen_copy", "qwen3")
    assert (
        tokenizer_mismatch(model_source(str(qwen)), model_source(str(copy))) is None
    )  # another directory with the same tokenizer is fine
    cfg, layout = sglang_cfg(tmp_path, "inprocess", 1, "http://127.0.0.1:9")
    cfg = apply_overrides(cfg, [f"model.hf_path={qwen}", f"rollout.sglang_model_path={llama}"])
    with pytest.raises(ConfigError) as e:
        start_engines(cfg, layout, kwargs())
    assert e.value.field == "rollout.sglang_model_path" and "differ" in e.value.reason


def test_the_first_weight_sync_reaches_disaggregated_engines_through_their_update_groups(tmp_path, router):
    """No broadcast handed in: start_engines joins each server's gloo update group, and the first sync cannot raise;
    after a restart the trainer joins the new server's group and syncs again."""
    from cod_megatron.sync.weight_sync import WeightSync
    from tests.policy.parallel_utils import tiny_cfg

    cfg, layout = sglang_cfg(tmp_path, "inprocess", 2, router.url)
    engines = start_engines(cfg, layout, {"stop_token_ids": [99], "hf_config": None})
    try:
        assert all(e.client.transport == "distributed" and e.client.broadcast is not None for e in engines)
        model = _tiny_policy(tiny_cfg("model.num_layers=1"))
        sync = WeightSync(tiny_cfg("model.num_layers=1").model, engines, bucket_bytes=8 << 10)
        sync.sync(model, version=3)
        assert [e.client.health()["server_weight_version"] for e in engines] == ["3", "3"]
        engines[1].restart()
        sync.sync(model, version=4)
        assert [e.client.health()["server_weight_version"] for e in engines] == ["4", "4"]
    finally:
        shutdown_engines(engines)
        from cod_megatron.policy.distributed import destroy_distributed

        destroy_distributed()


def test_the_first_weight_sync_reaches_colocated_engines_as_ipc_payloads(tmp_path, router):
    """No serializer handed in: colocated engines get SGLang's payload format from start_engines, and the first sync
    as the loop builds it (``run_parts.ipc_engine_ranks``) delivers every HF tensor bit-equal; a restarted engine is
    synced again on its own (one trainer rank: nothing else takes part)."""
    from cod_megatron.loop.run_parts import ipc_engine_ranks
    from cod_megatron.policy.hf_export import export_hf_weights
    from cod_megatron.sync.weight_sync import WeightSync
    from tests.policy.parallel_utils import tiny_cfg

    record = tmp_path / "served.pt"
    cfg = cod_recipes.get("debug_cpu")  # colocated: one engine at TP 1 on the trainer's device
    layout = finalize(cfg)
    overrides = [
        "rollout.engine=sglang",
        "rollout.backend=inprocess",
        f"rollout.sglang_command={json.dumps(STANDIN)}",
        "rollout.sglang_model_path=/models/standin",
        f"rollout.sglang_router_url={router.url}",
        f"rollout.sglang_extra_args={json.dumps(['--record', str(record)])}",
        f"run.output_dir={tmp_path}",
    ]
    cfg = apply_overrides(cfg, overrides)
    (engine,) = engines = start_engines(cfg, layout, {"stop_token_ids": [99], "hf_config": None})
    try:
        assert layout.colocated and engine.client.transport == "tensor" and engine.client.serializer is not None
        model_cfg = tiny_cfg("model.num_layers=1").model
        model = _tiny_policy(tiny_cfg("model.num_layers=1"))
        want = export_hf_weights(model, model_cfg)
        sync = WeightSync(model_cfg, engines, bucket_bytes=8 << 10, engine_ranks=ipc_engine_ranks(cfg, layout, engines))
        sync.sync(model, version=3)
        served = torch.load(record, weights_only=True)
        assert engine.client.health()["server_weight_version"] == "3" and served["versions"] == [3]
        assert sorted(served["weights"]) == sorted(want)
        assert all(torch.equal(served["weights"][n], t) for n, t in want.items())
        engine.restart()
        sync.sync(model, version=4, engines=[engine])
        assert engine.client.health()["server_weight_version"] == "4"
        assert torch.load(record, weights_only=True)["versions"] == [4]  # the new server's first update
    finally:
        shutdown_engines(engines)
        from cod_megatron.policy.distributed import destroy_distributed

        destroy_distributed()


def _tiny_policy(cfg):
    """A one-layer policy on CPU (megatron's groups for one process), for a real export."""
    from cod_megatron.config import finalize
    from cod_megatron.policy.distributed import init_distributed
    from cod_megatron.policy.trainer import PolicyTrainer
    from tests.dist import free_port

    layout = finalize(cfg)
    init_distributed(layout, master_port=free_port())
    return PolicyTrainer(cfg, layout).model
