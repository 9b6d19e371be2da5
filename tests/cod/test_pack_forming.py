"""Pack forming strategies, padding/dropping, stable seeds; the OPD advantage."""

import hashlib
import json
import subprocess
import sys

from cod_megatron.cod.episode import Task
from cod_megatron.cod.pack_forming import batch_pack_seed, form_packs, stable_pack_seed


def rows(spec: dict[str, int]) -> list[Task]:
    return [Task(taskset_id=name, row=i) for name, n in spec.items() for i in range(n)]


def ids(fp):
    return [(t.taskset_id, t.row) for t in fp.pack.tasks]


def test_cod_packs_never_mix_tasksets_and_pad_cyclically():
    packs = form_packs(rows({"a": 6, "b": 4}), pack_size=4)
    assert [ids(p) for p in packs] == [
        [("a", 0), ("a", 1), ("a", 2), ("a", 3)],
        [("a", 4), ("a", 5), ("a", 0), ("a", 1)],
        [("b", 0), ("b", 1), ("b", 2), ("b", 3)],
    ]
    assert all(p.env_task_idx == (0, 1, 2, 3) for p in packs)
    assert [p.pack.pack_id for p in packs] == [0, 1, 2]


def test_short_chunk_dropped_without_padding():
    assert len(form_packs(rows({"a": 6}), pack_size=4, pad_to_full_pack=False)) == 1


def test_ralph_sample_repeats_the_first_task_with_index_zero():
    packs = form_packs(rows({"a": 8}), pack_size=4, strategy="ralph_sample")
    assert [ids(p) for p in packs] == [[("a", 0)] * 4, [("a", 4)] * 4]
    assert all(p.env_task_idx == (0, 0, 0, 0) for p in packs)


def test_ralph_full_expands_every_task_without_dropping():
    packs = form_packs(rows({"a": 5}), pack_size=4, strategy="ralph_full")
    assert [ids(p) for p in packs] == [[("a", i)] * 4 for i in range(5)]
    assert [p.env_task_idx for p in packs] == [(i % 4,) * 4 for i in range(5)]


def test_stable_seed_matches_the_reference_recipe_and_ignores_order():
    tasks = (Task(taskset_id="pde", row=3), Task(taskset_id="pde", row=1))
    digest = hashlib.sha256(b'[["pde",1],["pde",3]]').digest()
    assert stable_pack_seed(tasks) == int.from_bytes(digest[:8], "big")
    assert stable_pack_seed(tuple(reversed(tasks))) == stable_pack_seed(tasks)
    assert json.dumps([["pde", 1]], separators=(",", ":")) == '[["pde",1]]'


def test_batch_seed_is_the_same_in_another_process():
    code = "from cod_megatron.cod.pack_forming import batch_pack_seed; print(batch_pack_seed('3/eval', 2))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(other) == batch_pack_seed("3/eval", 2)
    assert batch_pack_seed(1, 0) != batch_pack_seed(1, 1)


def test_packs_of_one_batch_share_nothing_but_the_g_rollouts_share_the_seed():
    a = form_packs(rows({"a": 8}), pack_size=4, batch_id=5)
    b = form_packs(rows({"a": 8}), pack_size=4, batch_id=5)
    assert [p.pack.seed for p in a] == [p.pack.seed for p in b]
    assert a[0].pack.seed != a[1].pack.seed
