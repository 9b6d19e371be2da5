"""The SGLang adapter: request bodies vs the pinned version's fixtures, response parsing, a stand-in server end to end,
and (marker ``sglang``) a real server at ``$COD_SGLANG_URL``."""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from cod_megatron.engines.interface import EngineRequest, Generation, SamplingParams
from cod_megatron.engines.sglang.client import SGLangEngine
from cod_megatron.engines.sglang.ipc import serializer_for
from cod_megatron.engines.sglang.protocol import (
    SGLANG_ROUTER_VERSION,
    SGLANG_VERSION,
    HttpClient,
    SGLangError,
    generate_body,
    parse_generation,
)
from cod_megatron.engines.sglang.server import _LAUNCH_FLAGS, SGLangRouterClient, SGLangServerConfig, launch_argv
from cod_megatron.engines.sglang.shared_group import update_weights_shared_group
from tests.engines.sglang_standin import (
    SAMPLING_KEYS,
    LoopbackTransport,
    SGLangStandIn,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sglang" / SGLANG_VERSION
ROUTER_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sglang_router" / SGLANG_ROUTER_VERSION


def fixture(name: str, root: Path = FIXTURES) -> dict:
    return json.loads((root / f"{name}.json").read_text())


def shape(x):
    """JSON structure with values erased: key sets and element types, what a schema check sees."""
    if isinstance(x, dict):
        return {k: shape(v) for k, v in x.items()}
    if isinstance(x, list):
        kinds = {json.dumps(shape(v), sort_keys=True) for v in x}
        return ["|".join(sorted(kinds))]
    return type(x).__name__


# ---- a tiny deterministic engine ----------------------------------------------------------------------------------


class TinyEngine:
    """prompt[-1]+1, +2, ... with log-prob -0.5 each; token 99 stops. Records weight buckets."""

    def __init__(self):
        self.buckets: list[tuple[list[str], int, bool]] = []
        self.params: dict[str, torch.Tensor] = {}
        self.weight_version = -1
        self.released = False
        self.seen: list[EngineRequest] = []

    def generate_batch(self, requests):
        if self.released:
            raise RuntimeError("memory is released")
        self.seen += requests
        out = []
        for r in requests:
            ids = []
            for i in range(r.params.max_new_tokens):
                ids.append(r.prompt_ids[-1] + 1 + i)
                if ids[-1] == 99:
                    break
            finish = "stop" if ids and ids[-1] == 99 else "length"
            out.append(Generation(token_ids=ids, logprobs=[-0.5] * len(ids), finish_reason=finish))
        return out

    def update_weights(self, named_tensors, *, version, last):
        self.buckets.append(([n for n, _ in named_tensors], version, last))
        self.params.update({n: t.clone() for n, t in named_tensors})
        if last:
            self.weight_version = version

    def release_memory(self):
        self.released = True

    def resume_memory(self):
        self.released = False

    def health(self):
        return {"ok": True, "weight_version": self.weight_version}


def requests_():
    return [
        EngineRequest([1, 2, 3], SamplingParams(max_new_tokens=4, temperature=1.0, seed=11)),
        EngineRequest([7, 97], SamplingParams(max_new_tokens=5, temperature=0.7, seed=12)),
    ]


def bucket(n: int = 2):
    return [
        ("model.layers.0.mlp.down_proj.weight", torch.full((3, 2), float(n), dtype=torch.bfloat16)),
        ("model.norm.weight", torch.ones(3, dtype=torch.bfloat16)),
    ][:n]


# ---- (1) request bodies match the pinned version ------------------------------------------------------------------


def test_fixtures_are_for_the_pinned_versions():
    assert fixture("generate")["sglang_version"] == SGLANG_VERSION
    assert fixture("create_worker", ROUTER_FIXTURES)["sglang_router_version"] == SGLANG_ROUTER_VERSION
    assert (FIXTURES / "README.md").exists() and (ROUTER_FIXTURES / "README.md").exists()


def test_generate_body_matches_fixture():
    fx = fixture("generate")["request"]
    body = generate_body(requests_(), stop_token_ids=[151645])
    assert shape(body) == shape(fx)
    assert body["sampling_params"][0] == {
        "max_new_tokens": 4,
        "temperature": 1.0,
        "stop_token_ids": [151645],
        "sampling_seed": 11,
    }
    fields = fixture("request_fields")
    assert set(body) <= set(fields["endpoints"]["/generate"]["fields"])
    assert set(fields["sampling_params"]["fields"]) == SAMPLING_KEYS  # the stand-in refuses what SGLang refuses
    for p in body["sampling_params"]:
        assert set(p) <= SAMPLING_KEYS
    # no seed, no stop ids: those keys are left out, not sent as null
    bare = generate_body([EngineRequest([1], SamplingParams(max_new_tokens=1))])
    assert bare["sampling_params"] == [{"max_new_tokens": 1, "temperature": 1.0}]
    big = generate_body([EngineRequest([1], SamplingParams(max_new_tokens=1, seed=2**64 + 5))])
    assert 0 <= big["sampling_params"][0]["sampling_seed"] < 2**63


@pytest.mark.parametrize(
    ("name", "make"),
    [
        (
            "init_weights_update_group",
            lambda e: e.init_group_body("10.0.0.1", 29600, 1, 2),
        ),
        ("update_weights_from_distributed", lambda e: e.bucket_body(bucket(), version=3, last=True)),
        ("update_weights_from_distributed_bucket", lambda e: e.bucket_body(bucket(1), version=3, last=False)),
    ],
)
def test_weight_bodies_match_fixtures(name, make):
    engine = SGLangEngine("http://127.0.0.1:1", broadcast=lambda named: None)
    body, fx = make(engine), fixture(name)["request"]
    assert shape(body) == shape(fx)
    spec = fixture("request_fields")["endpoints"][fixture(name)["path"]]
    assert set(spec["required"]) <= set(body) <= set(spec["fields"])


def test_bucket_metadata_values():
    engine = SGLangEngine("http://127.0.0.1:1", broadcast=lambda named: None)
    body = engine.bucket_body(bucket(), version=7, last=True)
    assert body["dtypes"] == ["bfloat16", "bfloat16"] and body["shapes"] == [[3, 2], [3]]
    assert body["weight_version"] == "7" and body["flush_cache"] is True


def test_tensor_body_matches_fixture():
    engine = SGLangEngine("http://127.0.0.1:1", transport="tensor", serializer=serializer_for(1))
    body, fx = engine.bucket_body(bucket(), version=3, last=True), fixture("update_weights_from_tensor")["request"]
    assert shape(body) == shape(fx)
    with pytest.raises(ValueError, match="MultiprocessingSerializer"):
        SGLangEngine("http://127.0.0.1:1", transport="tensor").update_weights(bucket(), version=1, last=True)


class Recorder:
    """Answers every request with the fixture's response and records what the client sent."""

    def __init__(self, answers: dict[tuple[str, str], tuple[int, object]]):
        self.answers, self.sent = answers, []
        rec = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _do(self, method):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                rec.sent.append((method, self.path, json.loads(raw) if raw else None))
                status, body = rec.answers.get((method, self.path.split("?")[0]), (404, {"detail": "Not Found"}))
                data = b"" if body is None else (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._do("GET")

            def do_POST(self):
                self._do("POST")

            def do_DELETE(self):
                self._do("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def answers_from(*names, root=FIXTURES):
    out = {}
    for n in names:
        fx = fixture(n, root)
        out[(fx["method"], fx["path"])] = (fx["response"]["status"], fx["response"]["body"])
    return out


def test_control_bodies_match_fixtures():
    names = ["release_memory_occupation", "resume_memory_occupation", "flush_cache", "destroy_weights_update_group"]
    rec = Recorder(answers_from(*names))
    try:
        engine = SGLangEngine(rec.url)
        engine.release_memory()
        engine.resume_memory()
        engine.flush_cache()
        engine.destroy_weights_update_group()
        sent = {path.split("?")[0]: body for _, path, body in rec.sent}
        for n in names:
            fx = fixture(n)
            assert shape(sent[fx["path"]]) == shape(fx["request"]), n
    finally:
        rec.close()


def test_weight_session_calls_in_order_and_bodies_match():
    answers = answers_from(
        "begin_weight_update", "update_weights_from_distributed", "end_weight_update", "init_weights_update_group"
    )
    rec = Recorder(answers)
    joined, sent = [], []
    try:
        engine = SGLangEngine(rec.url, broadcast=lambda named: sent.append([n for n, _ in named]))
        engine.init_weights_update_group("10.0.0.1", 29600, 1, 2, join=lambda: joined.append(True))
        engine.update_weights(bucket(1), version=3, last=False)
        engine.update_weights(bucket(), version=3, last=True)
        paths = [p for _, p, _ in rec.sent]
        assert paths == [
            "/init_weights_update_group",
            "/begin_weight_update",
            "/update_weights_from_distributed",
            "/update_weights_from_distributed",
            "/end_weight_update",
        ]
        assert joined == [True] and len(sent) == 2 and engine.weight_version == 3
        for (_, path, body), name in zip(
            rec.sent[1:], ["begin_weight_update", None, None, "end_weight_update"], strict=True
        ):
            if name:
                assert shape(body) == shape(fixture(name)["request"]), path
    finally:
        rec.close()


# ---- launch argv --------------------------------------------------------------------------------------------------


def test_launch_flags_exist_in_pinned_server_args():
    spec = fixture("server_args")
    assert spec["sglang_version"] == SGLANG_VERSION
    for field, flag in _LAUNCH_FLAGS.items():
        assert flag in spec["options"], flag
        assert spec["options"][flag]["dest"] == field
        assert field in spec["fields"]
    cfg = SGLangServerConfig(
        model_path="/models/m", port=31000, tp_size=2, base_gpu_id=4, mem_fraction_static=0.7, context_length=12000,
        dtype="bfloat16", random_seed=1, enable_memory_saver=True, extra_args=("--log-level-http", "warning"),
    )  # fmt: skip
    argv = launch_argv(cfg, python="python")
    assert argv[:3] == ["python", "-m", "sglang.launch_server"]
    i, flags = 3, {}
    while i < len(argv):
        opt = spec["options"][argv[i]]  # KeyError: a flag the pinned version does not have
        if opt["takes_value"]:
            flags[opt["dest"]] = argv[i + 1]
            i += 2
        else:
            flags[opt["dest"]] = True
            i += 1
    assert flags["model_path"] == "/models/m" and flags["tp_size"] == "2" and flags["base_gpu_id"] == "4"
    assert flags["mem_fraction_static"] == "0.7" and flags["context_length"] == "12000"
    assert flags["skip_tokenizer_init"] is True and flags["enable_memory_saver"] is True
    assert flags["enable_deterministic_inference"] is True and flags["log_level_http"] == "warning"
    assert "served_model_name" not in flags  # None -> omitted


# ---- (2) parsing the pinned version's answers ---------------------------------------------------------------------


def test_parse_generate_fixture():
    body = fixture("generate")["response"]["body"]
    g0, g1 = (parse_generation(x) for x in body)
    assert g0 == Generation(token_ids=[40, 1079, 151645], logprobs=[-0.25, -1.5, -0.125], finish_reason="stop")
    assert g1.token_ids == [9707, 11] and g1.logprobs == [-0.75, -2.0] and g1.finish_reason == "length"


def test_parse_generation_reads_the_prefix_cache_hits():
    item = json.loads(json.dumps(fixture("generate")["response"]["body"][0]))
    item["meta_info"]["cached_tokens"] = 2
    assert parse_generation(item).cached_tokens == 2


def test_parse_generation_rejects_bad_answers():
    good = fixture("generate")["response"]["body"][0]
    aborted = {**good, "meta_info": {**good["meta_info"], "finish_reason": {"type": "abort", "message": "oom"}}}
    with pytest.raises(SGLangError, match="aborted: oom"):
        parse_generation(aborted)
    no_lp = {**good, "meta_info": {k: v for k, v in good["meta_info"].items() if k != "output_token_logprobs"}}
    with pytest.raises(SGLangError, match="return_logprob"):
        parse_generation(no_lp)
    with pytest.raises(SGLangError, match="disagree"):
        parse_generation({**good, "output_ids": [1, 2, 3]})
    trimmed = parse_generation({**good, "output_ids": good["output_ids"][:-1]})  # stop-trimmed ids are accepted
    assert trimmed.token_ids == [40, 1079, 151645]


def test_generate_and_health_against_fixture_answers():
    rec = Recorder(answers_from("generate", "health", "model_info"))
    try:
        engine = SGLangEngine(rec.url, stop_token_ids=[151645])
        gens = engine.generate_batch(requests_())
        assert [g.finish_reason for g in gens] == ["stop", "length"]
        h = engine.health()
        assert h["ok"] is True and h["weight_version"] == 3 and h["server_weight_version"] == "3"
        assert shape(rec.sent[0][2]) == shape(fixture("generate")["request"])
    finally:
        rec.close()


def test_errors_name_the_endpoint():
    rec = Recorder(answers_from("generate_error", "update_weights_from_distributed_error", "begin_weight_update"))
    try:
        engine = SGLangEngine(rec.url, broadcast=lambda named: None, retries=0)
        with pytest.raises(SGLangError, match=r"POST /generate -> HTTP 400: The input \(13000 tokens\)"):
            engine.generate_batch(requests_())
        with pytest.raises(SGLangError, match="update_weights_from_distributed -> HTTP 400: .*begin_weight_update"):
            engine.update_weights(bucket(), version=1, last=True)
        assert engine.weight_version == -1
        h = SGLangEngine(rec.url, retries=0).health()  # /health is not served by this recorder -> 404
        assert h["ok"] is False and h["weight_version"] == -1 and "GET /health -> HTTP 404" in h["error"]
    finally:
        rec.close()


def test_refused_connection_is_retried_then_named():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    client = HttpClient(f"http://127.0.0.1:{port}", retries=2, backoff_s=0.01)
    with pytest.raises(SGLangError, match=r"GET /model_info: ConnectionRefusedError"):
        client.request("GET", "/model_info")


def test_router_client_against_fixtures():
    names = ["create_worker", "list_workers", "delete_worker"]
    rec = Recorder(answers_from(*names, root=ROUTER_FIXTURES))
    try:
        router = SGLangRouterClient(rec.url)
        wid = router.add_worker("http://10.0.0.2:30000")
        assert wid == fixture("create_worker", ROUTER_FIXTURES)["response"]["body"]["worker_id"]
        assert router.worker_id("http://10.0.0.2:30000/") == wid
        router.wait_healthy("http://10.0.0.2:30000", timeout_s=2, poll_s=0.01)
        router.remove_worker("http://10.0.0.2:30000")  # by URL: looked up, deleted by id
        assert [(m, p) for m, p, _ in rec.sent][-1] == ("DELETE", f"/workers/{wid}")
        assert shape(rec.sent[0][2]) == shape(fixture("create_worker", ROUTER_FIXTURES)["request"])
        with pytest.raises(SGLangError, match="no worker registered"):
            router.remove_worker("http://10.9.9.9:1")
    finally:
        rec.close()


# ---- (3) end to end against the stand-in --------------------------------------------------------------------------


@pytest.fixture
def standin():
    tiny, transport = TinyEngine(), LoopbackTransport(timeout_s=5)
    with SGLangStandIn(tiny, transport=transport) as server:
        yield server, tiny, transport


def test_standin_generate(standin):
    server, tiny, _ = standin
    engine = SGLangEngine(server.url, stop_token_ids=[99])
    gens = engine.generate_batch(requests_())
    assert gens[0] == Generation(token_ids=[4, 5, 6, 7], logprobs=[-0.5] * 4, finish_reason="length")
    assert gens[1] == Generation(token_ids=[98, 99], logprobs=[-0.5] * 2, finish_reason="stop")
    assert [r.params.seed for r in tiny.seen] == [11, 12] and tiny.seen[1].params.temperature == 0.7
    assert engine.generate_batch([]) == []
    # the stand-in refuses unknown sampling keys like the pinned version's schema does
    with pytest.raises(SGLangError, match="unknown field `seed`"):
        engine.http.request("POST", "/generate", {"input_ids": [[1]], "sampling_params": [{"seed": 1}]})


def test_standin_reports_cached_prompt_tokens_like_a_radix_cache(standin):
    server, _, _ = standin
    engine = SGLangEngine(server.url, stop_token_ids=[99])

    def cached(*prompts):
        reqs = [EngineRequest(list(p), SamplingParams(max_new_tokens=2)) for p in prompts]
        return [g.cached_tokens for g in engine.generate_batch(reqs)]

    assert cached([1, 2, 3, 4]) == [0]
    assert cached([1, 2, 3, 9], [1, 2, 3, 4]) == [3, 3]  # a shared prefix; never the last token
    engine.flush_cache()
    assert cached([1, 2, 3, 4]) == [0]


def test_standin_weight_updates_and_versions(standin):
    server, tiny, transport = standin
    engine = SGLangEngine(server.url, broadcast=transport.broadcast)
    assert engine.health()["weight_version"] == -1  # "default" at launch
    engine.init_weights_update_group("127.0.0.1", 29600, rank_offset=1, world_size=2)
    assert transport.joined[0]["group_name"] == "cod_weight_update" and transport.joined[0]["rank_offset"] == 1

    names = [n for n, _ in bucket()]
    for version in (1, 2):
        engine.update_weights(bucket(1), version=version, last=False)
        engine.update_weights(bucket()[1:], version=version, last=True)
        h = engine.health()
        assert h["ok"] and h["weight_version"] == version and engine.weight_version == version
    expected = [([names[0]], -1, False), ([names[1]], 1, True), ([names[0]], -1, False), ([names[1]], 2, True)]
    assert tiny.buckets == expected
    assert not server.session_open
    assert torch.equal(tiny.params[names[0]], bucket(1)[0][1])
    gen = engine.generate_batch(requests_()[:1])[0]
    assert gen.token_ids == [4, 5, 6, 7]

    # a bucket whose metadata does not match the broadcast fails, names the endpoint, and closes the session
    bad = SGLangEngine(server.url, broadcast=lambda named: transport.broadcast([(n, t.float()) for n, t in named]))
    with pytest.raises(SGLangError, match="update_weights_from_distributed -> HTTP 400: Failed to receive"):
        bad.update_weights(bucket(), version=3, last=True)
    assert not server.session_open and engine.health()["weight_version"] == 2
    engine.update_weights(bucket(), version=3, last=True)  # the next update can begin
    assert engine.health()["weight_version"] == 3


def test_standin_shared_group_and_tensor_transport(standin):
    server, tiny, transport = standin
    shared = SGLangEngine(server.url)
    shared.init_weights_update_group("127.0.0.1", 29600, rank_offset=1, world_size=2)
    update_weights_shared_group([shared], bucket(), version=5, last=True, broadcast=transport.broadcast)
    assert shared.weight_version == 5 and shared.health()["weight_version"] == 5

    colocated = SGLangEngine(server.url, transport="tensor", serializer=serializer_for(1))
    colocated.update_weights(bucket(), version=6, last=True)
    assert colocated.health()["weight_version"] == 6 and tiny.buckets[-1] == ([n for n, _ in bucket()], 6, True)


def test_a_shared_group_update_whose_post_fails_raises_while_the_broadcast_still_waits(standin):
    """Issue 26 item 5 for engines sharing one group: the server fails its POST without receiving, so the broadcast
    (here one whose other members never arrive) would wait for the group's timeout; the call raises at once."""
    server, _, _ = standin
    shared = SGLangEngine(server.url)
    shared.init_weights_update_group("127.0.0.1", 29600, rank_offset=1, world_size=2)
    server.failures["/update_weights_from_distributed"] = (400, "Failed to receive weights: bad dtype")
    stuck, aborted, outcome = threading.Event(), [], {}

    def call() -> None:
        try:
            update_weights_shared_group(
                [shared], bucket(), version=7, last=True, broadcast=lambda named: stuck.wait(60),
                abort=lambda: aborted.append(True),
            )  # fmt: skip
        except Exception as exc:
            outcome["exc"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(15)
    stuck.set()
    assert not thread.is_alive(), "the update waited for the broadcast"
    assert isinstance(outcome.get("exc"), SGLangError) and "bad dtype" in str(outcome["exc"]), outcome
    assert aborted == [True] and not server.session_open


def test_standin_release_resume_and_health(standin):
    server, tiny, _ = standin
    engine = SGLangEngine(server.url, release_tags=("kv_cache", "weights"))
    engine.release_memory()
    assert tiny.released and server.released_tags == {"kv_cache", "weights"}
    h = engine.health()
    assert h["ok"] and h["released"] is True
    with pytest.raises(SGLangError, match="memory is released"):
        engine.generate_batch(requests_())
    engine.resume_memory()
    assert not tiny.released and not server.released_tags and engine.health()["released"] is False
    engine.flush_cache()
    assert server.calls[-1][0] == "/flush_cache"


# ---- (4) a real server ---------------------------------------------------------------------------------------------


@pytest.mark.sglang
@pytest.mark.skipif(
    not os.environ.get("COD_SGLANG_URL"),
    reason="set COD_SGLANG_URL to a running SGLang server (launched with --skip-tokenizer-init and "
    "--enable-deterministic-inference, e.g. from launch_argv) to run the real-server test",
)
def test_real_server():
    url = os.environ["COD_SGLANG_URL"]
    engine = SGLangEngine(url, timeout_s=120)
    h = engine.health()
    assert h["ok"], h
    info = engine.server_info()
    assert info.get("version") == SGLANG_VERSION, f"server runs sglang {info.get('version')}, client is pinned to it"
    reqs = [
        EngineRequest([1, 2, 3, 4], SamplingParams(max_new_tokens=8, temperature=1.0, seed=1)),
        EngineRequest([5, 6], SamplingParams(max_new_tokens=3, temperature=0.7, seed=2)),
    ]
    a, b = engine.generate_batch(reqs), engine.generate_batch(reqs)
    for g, r in zip(a, reqs, strict=True):
        assert 1 <= len(g.token_ids) <= r.params.max_new_tokens and len(g.logprobs) == len(g.token_ids)
        assert all(lp <= 0.0 for lp in g.logprobs) and g.finish_reason in ("stop", "length")
        assert g.finish_reason == "stop" or len(g.token_ids) == r.params.max_new_tokens
    if info.get("enable_deterministic_inference"):
        assert [g.token_ids for g in a] == [g.token_ids for g in b]  # sampling_seed is honoured
    engine.flush_cache()
    if info.get("enable_memory_saver"):  # KV cache only: released weights would hold garbage until an update
        kv_only = SGLangEngine(url, release_tags=("kv_cache",))
        kv_only.release_memory()
        assert kv_only.health()["ok"]
        kv_only.resume_memory()
        assert engine.generate_batch(reqs[:1])[0].token_ids
