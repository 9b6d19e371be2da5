"""SGLang engines, spoken to over HTTP (nothing here imports sglang, so all of it runs and is tested on CPU).

``protocol``: the pinned versions, the JSON-over-HTTP client and the ``/generate`` bodies; ``client``: one server
behind the engine interface (generation, weight-update sessions, memory, health); ``server``: the ``launch_server``
command line and the sglang-router client; ``actor``: the Ray actor that owns a server process; ``ray_engine``: the
trainer's handle on an actor and its server (the engine the rollout manager holds); ``update_group``: the trainer's
rank 0 of an engine's weight-update group; ``collective_post``: a POST and the collective its server joins, awaited
together (a failure raises at once); ``shared_group``: several engines in one group; ``ipc``: CUDA-IPC payloads;
``devices``: GPU UUIDs of engines and trainer ranks, matched for colocated engines.
"""
