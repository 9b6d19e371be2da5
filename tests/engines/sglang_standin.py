"""A STAND-IN for an SGLang server, for CPU tests of :mod:`cod_megatron.engines.sglang`. Not SGLang.

:class:`SGLangStandIn` serves the subset of the pinned SGLang version's HTTP API that the client uses (same paths,
bodies and answers as recorded in ``tests/fixtures/sglang/<version>/``) on ``127.0.0.1`` with the stdlib
``ThreadingHTTPServer``, backed by any :class:`~cod_megatron.engines.interface.InferenceEngine`. It mimics the checks
that make real clients fail: unknown ``sampling_params`` keys are refused, weight updates outside a
``begin_weight_update``/``end_weight_update`` session fail, ``weight_version`` is a string.

There is no NCCL here: :class:`LoopbackTransport` stands in for the update group. The client's ``broadcast`` puts
the bucket on a queue and the stand-in's ``/update_weights_from_distributed`` takes it off, checking names, dtypes and
shapes against the request metadata the way an NCCL receive would fail on a mismatch. ``/update_weights_from_tensor``
decodes the way SGLang 0.5.23 does (:func:`deserialize_payload`: strict base64, then a restricted unpickler running
torch's own rebuild functions), checks that there is one payload per TP rank (``server_args["tp_size"]``) and has
each TP rank load its own entry; the trainer makes them with :mod:`cod_megatron.engines.sglang.ipc`.

``python tests/engines/sglang_standin.py`` runs it as a program over :class:`CountingEngine`, taking
``sglang.launch_server``'s flags, so the engine actors of :mod:`cod_megatron.engines.sglang.actor` can launch it in
place of SGLang on CPU (``rollout.sglang_command``; :data:`COMMAND` runs it by absolute path, from any directory).
Across processes ``/update_weights_from_tensor`` (shared memory on CPU, CUDA IPC on a GPU) and the gloo update group
work (the loopback transport lives in one process). ``--record PATH`` makes the program save what it received.

Buckets are forwarded to the engine as they arrive (SGLang loads them as they arrive too). The version is on the wire
only with the last bucket, so earlier buckets reach ``engine.update_weights`` with ``version=-1, last=False``.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import queue
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

from cod_megatron.engines.interface import EngineRequest, Generation, InferenceEngine, SamplingParams, ScoreRequest
from cod_megatron.engines.sglang.protocol import SGLANG_VERSION

if TYPE_CHECKING:
    import torch

SAMPLING_KEYS = frozenset(
    "max_new_tokens stop stop_token_ids stop_regex temperature top_p top_k min_p frequency_penalty presence_penalty "
    "repetition_penalty min_new_tokens n json_schema regex ebnf structural_tag ignore_eos skip_special_tokens "
    "spaces_between_special_tokens no_stop_trim stream_interval logit_bias sampling_seed custom_params beam_width "
    "watermark choice".split()
)
"""``sglang.api.v1.SamplingParams`` fields of the pinned version; any other key is a 400 there."""

COMMAND = [sys.executable, str(Path(__file__).resolve())]
"""``rollout.sglang_command`` that launches this file as the server program (by path: no cwd or PYTHONPATH needed)."""


class LoopbackTransport:
    """In-process stand-in for the NCCL update group: ``broadcast`` (trainer side) feeds ``receive`` (server side)."""

    def __init__(self, timeout_s: float = 10.0):
        self._q: queue.Queue = queue.Queue()
        self.timeout_s = timeout_s
        self.joined: list[dict[str, Any]] = []

    def broadcast(self, named_tensors: list[tuple[str, torch.Tensor]]) -> None:
        """Trainer side: send one bucket."""
        self._q.put([(n, t.detach().clone()) for n, t in named_tensors])

    def receive(
        self, names: list[str], dtypes: list[str], shapes: list[list[int]], group_name: str = "weight_update_group"
    ) -> list[tuple[str, torch.Tensor]]:
        """Server side (one queue, whatever the group): the bucket, checked against the request's metadata the way
        a mismatched receive would fail."""
        try:
            bucket = self._q.get(timeout=self.timeout_s)
        except queue.Empty:
            raise TimeoutError(f"no broadcast within {self.timeout_s} s") from None
        got = [(n, str(t.dtype).removeprefix("torch."), list(t.shape)) for n, t in bucket]
        want = list(zip(names, dtypes, [list(s) for s in shapes], strict=True))
        if got != want:
            raise ValueError(f"broadcast {got} does not match the request metadata {want}")
        return bucket


class GlooTransport:
    """The update group for real, over gloo: the stand-in joins the group the trainer hosts (as rank ``rank_offset``,
    the way SGLang's ``init_custom_process_group`` does) and receives each tensor by ``broadcast(src=0)``."""

    def __init__(self):
        self.joined: list[dict[str, Any]] = []
        self.groups: dict[str, Any] = {}
        """Joined process groups by name: SGLang keeps several (``_model_update_group[group_name]``)."""

    def join(self, body: dict[str, Any]) -> None:
        """``/init_weights_update_group``: blocks until the trainer's rank 0 has joined too."""
        from cod_megatron.engines.sglang.update_group import join_update_group

        name = body.get("group_name", "weight_update_group")
        self.groups[name] = join_update_group(
            body["master_address"], int(body["master_port"]), int(body["world_size"]), name,
            rank=int(body["rank_offset"]), backend="gloo",
        )  # fmt: skip
        self.joined.append(dict(body))

    def receive(
        self, names: list[str], dtypes: list[str], shapes: list[list[int]], group_name: str = "weight_update_group"
    ) -> list[tuple[str, torch.Tensor]]:
        """``/update_weights_from_distributed``: one broadcast per tensor from rank 0 of ``group_name``, in order."""
        import torch
        import torch.distributed as dist

        out = []
        for name, dtype, shape in zip(names, dtypes, shapes, strict=True):
            t = torch.empty(shape, dtype=getattr(torch, dtype))
            dist.broadcast(t, src=0, group=self.groups[group_name])
            out.append((name, t))
        return out


_DTYPES = (
    "bfloat16 bool float float16 float32 float64 float8_e4m3fn float8_e5m2 half int int16 int32 int64 int8 long uint8"
).split()
ALLOWED_GLOBALS = frozenset(
    {("builtins", n) for n in ("list", "tuple", "dict", "int", "float", "str", "bytes", "bool")}
    | {("collections", "OrderedDict"), ("copyreg", "__newobj__")}
    | {("torch", n) for n in ("Tensor", "Size", "device", "dtype", "UntypedStorage", *_DTYPES)}
    | {("torch.storage", "UntypedStorage"), ("torch.storage", "TypedStorage"), ("torch.nn.parameter", "Parameter")}
    | {("torch._utils", n) for n in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter")}
    | {("torch._tensor", "_rebuild_from_type_v2")}
    | {
        ("torch.multiprocessing.reductions", n)
        for n in (
            "rebuild_tensor",
            "rebuild_cuda_tensor",
            "rebuild_meta_tensor",
            "rebuild_storage_fd",
            "rebuild_storage_filename",
            "rebuild_storage_empty",
            "rebuild_typed_storage",
            "rebuild_typed_storage_child",
        )
    }
    | {("multiprocessing.resource_sharer", "DupFd"), ("sglang.srt.utils.patch_torch", "_rebuild_cuda_tensor_modified")}
)
"""The globals a list of named tensors can reference, all in SGLang 0.5.23's ``SafeUnpickler.ALLOWED_GLOBALS``
(``python/sglang/srt/utils/common.py``; it also allows more builtins, sparse/quantized rebuilds and some SGLang
structs): a payload this stand-in loads, SGLang loads too."""


class PayloadUnpickler(pickle.Unpickler):
    """SGLang's restricted unpickler, as far as tensors go: anything off :data:`ALLOWED_GLOBALS` is refused."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        if (module, name) not in ALLOWED_GLOBALS:
            raise RuntimeError(f"Blocked unsafe global ({module}.{name}) during pickle deserialization")
        if module.startswith("sglang."):  # a producer with SGLang's device-UUID patch: the consumer needs it too
            from sglang.srt.utils.patch_torch import monkey_patch_torch_reductions

            monkey_patch_torch_reductions()
        return super().find_class(module, name)


def deserialize_payload(payload: str) -> list[tuple[str, torch.Tensor]]:
    """One TP rank's entry of ``serialized_named_tensors`` back to ``(name, tensor)``, SGLang 0.5.23's way
    (``MultiprocessingSerializer.deserialize``: ``b64decode(validate=True)``, then the restricted unpickler)."""
    named = PayloadUnpickler(io.BytesIO(base64.b64decode(payload, validate=True))).load()
    return [(str(n), t) for n, t in named]


class _HTTPError(Exception):
    def __init__(self, status: int, body: Any):
        super().__init__(status)
        self.status, self.body = status, body


class SGLangStandIn:
    """A threaded HTTP server speaking SGLang's API over ``engine``; use as a context manager, ``.url`` to reach it."""

    def __init__(
        self,
        engine: InferenceEngine,
        *,
        transport: LoopbackTransport | GlooTransport | None = None,
        model_path: str = "standin",
        host: str = "127.0.0.1",
        port: int = 0,
        server_args: dict[str, Any] | None = None,
    ):
        self.engine = engine
        self.transport = transport or LoopbackTransport()
        self.model_path = model_path
        self.server_args = dict(server_args or {})
        """Launch arguments echoed by ``/server_info`` (as SGLang does), e.g. ``tp_size`` and ``base_gpu_id``."""
        self.weight_version = "default"
        self.groups: dict[str, dict[str, Any]] = {}
        """``/init_weights_update_group`` bodies by group name (SGLang keeps several groups, by name)."""
        self.session_open = False
        self.released_tags: set[str] = set()
        self.cached_prompts: list[list[int]] = []
        """Prompts served since the last flush: ``cached_tokens`` is the longest prefix shared with one of them."""
        self.calls: list[tuple[str, Any]] = []
        """Every (path, body) received, for tests."""
        self.failures: dict[str, tuple[int, str]] = {}
        """path -> (HTTP status, message): answered at once instead of serving the call, in SGLang's failure shape
        (``{"success": false, "message": ...}``), e.g. a server that cannot reach the trainer's rendezvous."""
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _serve(self, method: str) -> None:
                parsed = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                    status, out = standin.dispatch(method, parsed.path, body, parse_qs(parsed.query))
                except _HTTPError as exc:
                    status, out = exc.status, exc.body
                except json.JSONDecodeError as exc:
                    status, out = 400, {"error": {"message": f"bad JSON: {exc}"}}
                if isinstance(out, str):
                    data, ctype = out.encode(), "text/plain; charset=utf-8"
                elif out is None and method == "GET":
                    data, ctype = b"", "text/plain"
                else:
                    data, ctype = json.dumps(out).encode(), "application/json"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="sglang-standin", daemon=True
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SGLangStandIn:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down and close its socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SGLangStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- routes ----
    def dispatch(self, method: str, path: str, body: Any, query: dict[str, list[str]]) -> tuple[int, Any]:
        """Route one request; returns (status, body) with SGLang's shapes."""
        self.calls.append((path, body))
        if path in self.failures:
            status, message = self.failures[path]
            return status, {"success": False, "message": message}
        routes = {
            ("POST", "/generate"): self._generate,
            ("GET", "/health"): self._health,
            ("GET", "/health_generate"): self._health,
            ("GET", "/model_info"): self._model_info,
            ("GET", "/get_model_info"): self._model_info,
            ("GET", "/server_info"): self._server_info,
            ("POST", "/init_weights_update_group"): self._init_group,
            ("POST", "/destroy_weights_update_group"): self._destroy_group,
            ("POST", "/begin_weight_update"): self._begin,
            ("POST", "/end_weight_update"): self._end,
            ("POST", "/update_weights_from_distributed"): self._from_distributed,
            ("POST", "/update_weights_from_tensor"): self._from_tensor,
            ("POST", "/release_memory_occupation"): self._release,
            ("POST", "/resume_memory_occupation"): self._resume,
            ("POST", "/flush_cache"): self._flush,
            ("GET", "/flush_cache"): self._flush,
        }
        handler = routes.get((method, path))
        if handler is None:
            return 404, {"detail": "Not Found"}
        return handler(body or {}, query)

    def _generate(self, body: dict[str, Any], query: Any) -> tuple[int, Any]:
        ids = body.get("input_ids")
        if not ids:
            raise _HTTPError(400, {"error": {"message": "Either text, input_ids or input_embeds should be provided."}})
        single = isinstance(ids[0], int)
        prompts = [ids] if single else ids
        sp = body.get("sampling_params") or {}
        sps = [sp] * len(prompts) if isinstance(sp, dict) else sp
        if len(sps) != len(prompts):
            raise _HTTPError(400, {"error": {"message": "The length of sampling_params should match the batch size."}})
        for p in sps:
            unknown = sorted(set(p) - SAMPLING_KEYS)
            if unknown:
                raise _HTTPError(400, {"error": f"unknown field `{unknown[0]}`"})
        reqs = [
            EngineRequest(
                prompt_ids=list(prompt),
                params=SamplingParams(
                    max_new_tokens=int(p.get("max_new_tokens", 128)),
                    temperature=float(p.get("temperature", 1.0)),
                    seed=p.get("sampling_seed"),
                ),
            )
            for prompt, p in zip(prompts, sps, strict=True)
        ]
        t0 = time.perf_counter()
        if body.get("logprob_start_len") is not None:
            return self._score(body, prompts, sps, single)
        try:
            gens = self.engine.generate_batch(reqs)
        except Exception as exc:
            raise _HTTPError(400, {"error": {"message": str(exc)}}) from None
        want_lp = body.get("return_logprob", False)
        out = []
        for r, g in zip(reqs, gens, strict=True):
            finish = (
                {"type": "stop", "matched": g.token_ids[-1] if g.token_ids else None}
                if g.finish_reason == "stop"
                else {"type": "length", "length": len(g.token_ids)}
            )
            meta: dict[str, Any] = {
                "id": uuid.uuid4().hex,
                "finish_reason": finish,
                "prompt_tokens": len(r.prompt_ids),
                "weight_version": self.weight_version,
                "num_retractions": 0,
                "reasoning_tokens": 0,
                "completion_tokens": len(g.token_ids),
                "cached_tokens": self._cache_lookup(r.prompt_ids),
                "e2e_latency": time.perf_counter() - t0,
            }
            if want_lp:
                meta["input_token_logprobs"] = [[None, r.prompt_ids[-1], None]]
                meta["output_token_logprobs"] = [[lp, t, None] for lp, t in zip(g.logprobs, g.token_ids, strict=True)]
            out.append({"output_ids": list(g.token_ids), "meta_info": meta})
        return 200, out[0] if single else out

    def _score(self, body: dict[str, Any], prompts: list, sps: list, single: bool) -> tuple[int, Any]:
        """Prefill-only input log-probs (a teacher): entries from ``logprob_start_len`` on, the first one ``None``."""
        starts = body["logprob_start_len"]
        starts = [starts] * len(prompts) if isinstance(starts, int) else starts
        if any(int(p.get("max_new_tokens", 128)) != 0 for p in sps):
            raise _HTTPError(400, {"error": {"message": "stand-in: input log-probs only for max_new_tokens 0"}})
        if not body.get("return_logprob") or any(not 0 <= s < len(ids) for s, ids in zip(starts, prompts, strict=True)):
            raise _HTTPError(400, {"error": {"message": "stand-in: needs return_logprob and 0 <= start < len"}})
        reqs = [
            ScoreRequest(prompt_ids=list(ids[: s + 1]), token_ids=list(ids[s + 1 :]))
            for s, ids in zip(starts, prompts, strict=True)
        ]
        try:
            scores = self.engine.score_batch(reqs)
        except Exception as exc:
            raise _HTTPError(400, {"error": {"message": str(exc)}}) from None
        out = []
        for r, lps in zip(reqs, scores, strict=True):
            entries = [[None, r.prompt_ids[-1], None]] + [[lp, t, None] for lp, t in zip(lps, r.token_ids, strict=True)]
            meta = {
                "id": uuid.uuid4().hex,
                "finish_reason": {"type": "length", "length": 0},
                "prompt_tokens": len(r.prompt_ids) + len(r.token_ids),
                "weight_version": self.weight_version,
                "input_token_logprobs": entries,
                "output_token_logprobs": [],
                "completion_tokens": 0,
                "cached_tokens": 0,
            }
            out.append({"output_ids": [], "meta_info": meta})
        return 200, out[0] if single else out

    def _health(self, body: Any, query: Any) -> tuple[int, Any]:
        ok = bool(self.engine.health().get("ok", False))
        return (200 if ok else 503), None

    def _model_info(self, body: Any, query: Any) -> tuple[int, Any]:
        return 200, {
            "model_path": self.model_path,
            "served_model_name": self.model_path,
            "tokenizer_path": None,
            "is_generation": True,
            "preferred_sampling_params": None,
            "weight_version": self.weight_version,
            "load_format": "auto",
        }

    def _server_info(self, body: Any, query: Any) -> tuple[int, Any]:
        return 200, {
            **self.server_args,
            "model_path": self.model_path,
            "enable_memory_saver": True,
            "version": SGLANG_VERSION,
            # not SGLang's: what the stand-in's engine received and its update groups, for tests
            "standin_engine": self.engine.health(),
            "standin_update_groups": sorted(self.groups),
        }

    @staticmethod
    def _require(body: dict[str, Any], *keys: str) -> None:
        missing = [k for k in keys if k not in body]
        if missing:  # FastAPI's answer to a missing required field
            raise _HTTPError(422, {"detail": [{"loc": ["body", k], "msg": "Field required"} for k in missing]})

    @staticmethod
    def _result(success: bool, message: str) -> tuple[int, Any]:
        return (200 if success else 400), {"success": success, "message": message}

    def _init_group(self, body: dict[str, Any], query: Any) -> tuple[int, Any]:
        self._require(body, "master_address", "master_port", "rank_offset", "world_size")
        group = {"group_name": "weight_update_group", "backend": "nccl", **body}
        if isinstance(self.transport, GlooTransport):
            try:
                self.transport.join(group)
            except Exception as exc:
                return self._result(False, f"Failed to initialize custom process group: {exc}")
        else:
            self.transport.joined.append(dict(group))
        self.groups[group["group_name"]] = group
        return self._result(True, "Succeeded to initialize custom process group.")

    def _destroy_group(self, body: dict[str, Any], query: Any) -> tuple[int, Any]:
        name = body.get("group_name", "weight_update_group")
        if self.groups.pop(name, None) is None:
            return self._result(False, f"Group {name} not found")
        return self._result(True, "Succeeded to destroy custom process group.")

    def _begin(self, body: Any, query: Any) -> tuple[int, Any]:
        with self._lock:
            if self.session_open:
                return self._result(False, "a weight-update session is already open; call end_weight_update() first")
            self.session_open = True
        return self._result(True, "Success")

    def _end(self, body: Any, query: Any) -> tuple[int, Any]:
        with self._lock:
            if not self.session_open:
                return self._result(False, "no weight-update session is open; call begin_weight_update() first")
            self.session_open = False
        return self._result(True, "Success")

    def _load(self, named: list[tuple[str, Any]], body: dict[str, Any]) -> tuple[int, Any]:
        version = body.get("weight_version")
        try:
            self.engine.update_weights(named, version=-1 if version is None else int(version), last=version is not None)
        except Exception as exc:
            return self._result(False, f"Failed to update weights: {exc}")
        if body.get("flush_cache", True):  # SGLang drops its radix cache with the old weights
            self.cached_prompts.clear()
        message = "Succeeded to update parameter online."
        if version is not None:
            self.weight_version = str(version)
            message += f" Weight version updated to {version}."
        return self._result(True, message)

    def _from_distributed(self, body: dict[str, Any], query: Any) -> tuple[int, Any]:
        self._require(body, "names", "dtypes", "shapes")
        if not self.session_open:
            return self._result(
                False, "update_weights_from_distributed must run between begin_weight_update() and end_weight_update()"
            )
        name = body.get("group_name", "weight_update_group")
        if name not in self.groups:
            return self._result(
                False, f"Group {name} not in {sorted(self.groups)}. Please call `init_weights_update_group` first."
            )
        try:
            named = self.transport.receive(body["names"], body["dtypes"], body["shapes"], name)
        except Exception as exc:
            return self._result(False, f"Failed to receive weights: {exc}")
        return self._load(named, body)

    def _from_tensor(self, body: dict[str, Any], query: Any) -> tuple[int, Any]:
        self._require(body, "serialized_named_tensors")
        if not self.session_open:
            return self._result(
                False, "update_weights_from_tensor must run between begin_weight_update() and end_weight_update()"
            )
        payloads, tp = body["serialized_named_tensors"], int(self.server_args.get("tp_size", 1))
        if not isinstance(payloads, list) or len(payloads) != tp:
            got = len(payloads) if isinstance(payloads, list) else type(payloads).__name__
            return self._result(False, f"serialized_named_tensors: expected one payload per TP rank ({tp}), got {got}")
        try:  # each TP rank loads its own entry (deserialize_own_rank); they must all hold the same bucket
            per_rank = [deserialize_payload(p) for p in payloads]
        except Exception as exc:
            return self._result(False, f"Failed to deserialize the named tensors: {exc!r}")
        for rank, named in enumerate(per_rank[1:], start=1):
            if [n for n, _ in named] != [n for n, _ in per_rank[0]]:
                return self._result(False, f"TP rank {rank} got another bucket than TP rank 0")
        return self._load(per_rank[0], body)

    def _release(self, body: dict[str, Any], query: Any) -> tuple[int, Any]:
        self.released_tags |= set(body.get("tags") or ("weights", "kv_cache", "cuda_graph"))
        self.engine.release_memory()
        return 200, None

    def _resume(self, body: dict[str, Any], query: Any) -> tuple[int, Any]:
        self.released_tags -= set(body.get("tags") or ("weights", "kv_cache", "cuda_graph"))
        self.engine.resume_memory()
        return 200, None

    def _cache_lookup(self, prompt: list[int]) -> int:
        """Prompt tokens a radix cache would reuse (never the last one, which the forward needs); then cache it."""
        best = 0
        for seen in self.cached_prompts:
            shared = min(len(seen), len(prompt))
            best = max(best, next((i for i in range(shared) if seen[i] != prompt[i]), shared))
        self.cached_prompts.append(list(prompt))
        return min(best, len(prompt) - 1)

    def _flush(self, body: Any, query: Any) -> tuple[int, Any]:
        self.cached_prompts.clear()
        return 200, (
            "Cache flushed.\nPlease check backend logs for more details. "
            "(When there are running or waiting requests, the operation will not be performed.)\n"
        )


# ---- as a program: a stand-in for ``python -m sglang.launch_server`` -------------------------------------------------


def hf_engine(model_path: str) -> Any:
    """An embedded engine holding the HF model at ``model_path`` (a teacher: SGLang loads its weights at launch), or
    None when the path is no model directory (the weights then come from the trainer, counted)."""
    if not (Path(model_path) / "config.json").is_file():
        return None
    import torch
    from transformers import AutoModelForCausalLM

    from cod_megatron.engines.embedded import EmbeddedEngine

    hf = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    engine = EmbeddedEngine(hf.config, stop_token_ids=[])
    engine.update_weights([(n, p.detach()) for n, p in hf.named_parameters()], version=0, last=True)
    return engine


class CountingEngine:
    """A tiny deterministic engine for the stand-in program: ``prompt[-1] + 1, + 2, ...``, log-prob -0.5 each.

    Weight buckets are only counted (the answers never depend on them); ``weight_version`` follows the last bucket.
    With ``record``, every tensor received is kept (a copy, on CPU) and, each time an update closes, saved there with
    the closed versions: ``{"weights": {name: tensor}, "versions": [...], "buckets": n}``.
    """

    def __init__(self, record: str | None = None) -> None:
        self.weight_version = -1
        self.tensors_received = 0
        self.released = False
        self.record = record
        self.received: dict[str, Any] = {}
        self.versions: list[int] = []
        self.buckets = 0

    def generate_batch(self, requests: list[EngineRequest]) -> list[Generation]:  # noqa: D102
        if self.released:
            raise RuntimeError("memory is released")
        out = []
        for r in requests:
            ids = [r.prompt_ids[-1] + 1 + i for i in range(r.params.max_new_tokens)]
            out.append(Generation(token_ids=ids, logprobs=[-0.5] * len(ids), finish_reason="length"))
        return out

    def update_weights(self, named_tensors: list, *, version: int, last: bool) -> None:  # noqa: D102
        self.tensors_received += len(named_tensors)
        self.buckets += 1
        if self.record:
            self.received |= {n: t.detach().to("cpu", copy=True) for n, t in named_tensors}
        if last:
            self.weight_version = version
            self.versions.append(version)
            if self.record:
                import torch

                torch.save({"weights": self.received, "versions": self.versions, "buckets": self.buckets}, self.record)

    def release_memory(self) -> None:  # noqa: D102
        self.released = True

    def resume_memory(self) -> None:  # noqa: D102
        self.released = False

    def health(self) -> dict[str, object]:  # noqa: D102
        return {"ok": True, "weight_version": self.weight_version, "tensors_received": self.tensors_received}


def main(argv: list[str] | None = None) -> None:
    """Serve :class:`CountingEngine` until killed; takes ``sglang.launch_server``'s flags and ignores most of them.

    Lets CPU tests launch "SGLang servers" as child processes exactly the way the engine actors launch the real one
    (``rollout.sglang_command='["python", "tests/engines/sglang_standin.py"]'``, or :data:`COMMAND`).
    """
    import argparse

    p = argparse.ArgumentParser(prog="python tests/engines/sglang_standin.py", description=main.__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=30000)
    p.add_argument("--model-path", default="standin")
    p.add_argument("--tp-size", type=int, default=1)
    p.add_argument("--base-gpu-id", type=int, default=0)
    p.add_argument("--mem-fraction-static", type=float, default=None)
    p.add_argument("--record", default=None, help="stand-in only: save the weights received here (CountingEngine)")
    args, rest = p.parse_known_args(argv)
    server_args = {
        "tp_size": args.tp_size,
        "base_gpu_id": args.base_gpu_id,
        "mem_fraction_static": args.mem_fraction_static,
        "port": args.port,
        "other_args": rest,
    }
    standin = SGLangStandIn(
        hf_engine(args.model_path) or CountingEngine(record=args.record),
        transport=GlooTransport(),  # a separate process: the update group is real (gloo), as with SGLang
        model_path=args.model_path,
        host=args.host,
        port=args.port,
        server_args=server_args,
    )
    standin._server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
