"""The OpenAI-compatible client against a small local stand-in server (loopback only)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cod_megatron.engines.openai_policy import EndpointError, OpenAIChatPolicy


class StandIn(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions with the HiddenKey oracle's move: echo the key it finds, else k0."""

    requests: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        StandIn.requests.append(body)
        if self.path != "/v1/chat/completions":
            self.send_response(404)
            self.end_headers()
            return
        text = body["messages"][-1]["content"]
        words = text.split()
        if "update" in words:  # write the revealed key into the hint
            reply = next((w for w in reversed(words) if w.startswith("k") and w[1:].isdigit()), "none")
        else:
            hint = words[words.index("hint") + 2]
            reply = hint if hint.startswith("k") else "k0"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def test_client_sends_chat_request_and_returns_text(server):
    policy = OpenAIChatPolicy(server, model="tiny", temperature=0.0, max_tokens=4, seed=3)
    assert policy([{"role": "user", "content": "<bos> solve hint : k2 distractor : d1 answer :"}]) == "k2"
    sent = StandIn.requests[-1]
    assert sent["model"] == "tiny" and sent["max_tokens"] == 4 and sent["seed"] == 3


def test_eval_cli_runs_a_served_model(server, capsys):
    from cod_megatron.eval.__main__ import main

    assert main(["--env", "hidden_key", "--policy", f"openai:{server}", "--packs", "8", "--pack-size", "3"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["reward_by_position"][1:] == [1.0, 1.0]  # the stand-in writes and reads the key like the oracle


def test_unreachable_or_malformed_endpoint_raises_a_clear_error(server):
    with pytest.raises(EndpointError):
        OpenAIChatPolicy("http://127.0.0.1:9/v1", timeout_s=2)([{"role": "user", "content": "x"}])
    with pytest.raises(EndpointError):
        OpenAIChatPolicy(server.replace("/v1", "/nope"))([{"role": "user", "content": "x"}])
