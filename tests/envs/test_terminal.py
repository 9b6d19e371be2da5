"""TerminalSimulator (cod.md 9.3): rows, tasks and goal checks, the shell's commands and per-OS texts, malformed and
hostile actions (never an exception, never a host side effect), scripted policies and hint use."""

import math
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cod_envs.base import PackState, TaskContext
from cod_envs.terminal import ENV, POLICIES, TASK_TYPES, generate_task, make_rows, pack_layout, vfs
from cod_envs.terminal import policies as pol
from cod_envs.terminal.checks import all_pass, build_machines
from cod_envs.terminal.data import main as data_main
from cod_envs.terminal.machine import Machine, home_of
from cod_envs.terminal.prompts import (
    FAILURE_FEEDBACK,
    FORMAT_ERROR_OUTPUT,
    FORMAT_FAILURE_FEEDBACK,
    SUCCESS_FEEDBACK,
)
from cod_envs.terminal.shell import PIPE_ERROR, REDIRECT_ERROR, SUBSTITUTION_ERROR, Shell
from cod_envs.terminal.vfs import MAX_NODES, File
from cod_megatron.cod import hints
from cod_megatron.eval.stats import gap_stats, position_stats
from tests.envs.domain_checks import (
    cli_output_is_reproducible,
    disjoint_splits,
    rows_are_reproducible,
    steps_never_raise,
)
from tests.envs.hint_use import lifecycles

PKG = Path(__file__).resolve().parents[2] / "envs" / "terminal"


def make_env(row, pack_seed=7, task_idx=0, pack_size=8):
    return ENV(TaskContext(row=row, pack_seed=pack_seed, task_idx=task_idx, pack_size=pack_size), PackState())


def forced(task_type, os_type="linux", seed=1):
    """An env of a given type on a given OS (per_pack layout searched over pack seeds)."""
    pack = next(p for p in range(200) if pack_layout(p)[0] == os_type)
    return make_env({"seed": seed, "setting": "per_pack", "forced_task_type": task_type}, pack_seed=pack)


def shell(os_type="linux"):
    local = Machine(os_type, "localhost", "user", home_of(os_type))
    remote = Machine("linux", "192.168.1.50", "admin", ("home", "admin"))
    local.fs.makedirs(local.home)
    remote.fs.makedirs(remote.home)
    return Shell(local, remote)


def answer(cmd):
    return f"<answer>{cmd}</answer>"


# ---- data ------------------------------------------------------------------------------------------------------
def test_rows_are_deterministic_disjoint_prefix_stable_and_carry_the_task_type():
    rows_are_reproducible(make_rows, 40, 15)
    train, _ = disjoint_splits(make_rows)
    assert all(r["task_type"] == generate_task(r["seed"]).task_type for r in train)
    assert {r["task_type"] for r in train} == set(TASK_TYPES)
    assert make_rows(5, 1, "test", "easy") == make_rows(5, 1, "test", "default")
    assert all(r["setting"] == "per_pack" for r in make_rows(5, 1, "test", "per_pack"))
    with pytest.raises(ValueError):
        make_rows(1, setting="nope")


def test_cli_writes_identical_jsonl_twice(tmp_path):
    args = ["--train-size", "30", "--test-size", "10", "--seed", "5", "--setting", "per_pack"]
    out = cli_output_is_reproducible(data_main, args, tmp_path)
    assert len((out / "train.jsonl").read_text().splitlines()) == 30


# ---- tasks -----------------------------------------------------------------------------------------------------
def test_task_distribution_follows_the_spec():
    tasks = [generate_task(s) for s in range(3000)]
    types = Counter(t.task_type for t in tasks)
    assert set(types) == set(TASK_TYPES) and 0.45 < sum(t.category == "composite" for t in tasks) / 3000 < 0.55
    assert set(Counter(t.os_type for t in tasks)) == {"windows", "mac", "linux"}
    assert {int(t.host.rsplit(".", 1)[1]) for t in tasks} == set(range(10, 100))
    for t in tasks:
        local, remote = build_machines(t)
        assert not all_pass(t, local, remote) and t.checks
        if t.os_type == "windows" and t.task_type == "chmod":
            assert t.checks[0].machine == "remote"
        if t.os_type == "windows" and t.task_type in ("pack_upload", "download_extract", "pack_upload_extract"):
            assert ".zip" in t.description or "zip archive" in t.description
    kinds = {c.kind for t in tasks for c in t.checks}
    assert kinds == {"file_exists", "file_not_exists", "dir_exists", "permission_equals", "archive_contains"}
    # distractor files sit next to the task's files
    upload = next(t for t in tasks if t.task_type == "upload" and len(t.local) > 1)
    assert all(spec["path"][:-1] == upload.local[0]["path"][:-1] for spec in upload.local)


def test_tasks_and_distractors_are_stable_across_processes():
    code = "from cod_envs.terminal import generate_task as g; t = g(424242); print(t.description, t.local, t.remote)"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": h},
        ).stdout
        for h in ("1", "2")
    }
    assert len(outs) == 1


def test_default_setting_draws_from_the_row_and_per_pack_shares_the_machines():
    rows = make_rows(8, seed=2)
    envs = [make_env(r, pack_seed=1) for r in rows]
    assert len({(e.task.os_type, e.task.host, e.task.user) for e in envs}) > 1
    assert make_env(rows[0], pack_seed=1).system_prompt() == make_env(rows[0], pack_seed=99).system_prompt()
    per = make_rows(8, seed=2, setting="per_pack")
    envs = [make_env(r, pack_seed=5, task_idx=j) for j, r in enumerate(per)]
    assert len({(e.task.os_type, e.task.host, e.task.user) for e in envs}) == 1
    assert (envs[0].task.os_type, envs[0].task.host, envs[0].task.user) == pack_layout(5)
    assert len({e.task.description for e in envs}) > 1
    # G rollouts of one pack see the same task
    assert make_env(per[3], pack_seed=5).system_prompt() == make_env(per[3], pack_seed=5).system_prompt()


def test_same_inputs_give_same_prompts_observations_and_rewards():
    actions = [answer(c) for c in ("ls -la", "cd /tmp", "pwd", "ssh nobody@1.2.3.4", "whoami", "mkdir -p a/b")]

    def trace(seed):
        env = make_env({"seed": seed})
        out = [env.system_prompt(), env.first_observation()]
        out += [env.step(a) for a in actions]
        return out, env.final_feedback()

    for seed in range(5):
        assert trace(seed) == trace(seed)


# ---- texts -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "os_type,prompt",
    [("windows", "C:\\Users\\user>"), ("mac", "user@MacBook ~ % "), ("linux", "user@localhost:~$ ")],
)
def test_prompts_and_user_messages(os_type, prompt):
    env = forced("upload", os_type)
    assert env.first_observation() == f"Step 1/12\n\n{prompt}"
    system = env.system_prompt()
    name = {"windows": "Windows", "mac": "macOS", "linux": "Linux"}[os_type]
    assert f"- Local machine: {name} (type: {os_type}, hostname: localhost)\n" in system
    assert (
        f"- Remote server: {env.task.host} (Linux, SSH pre-configured)\n- Remote username: {env.task.user}\n" in system
    )
    assert "Note: Not all commands are available on all systems.\n\n## Task\nUpload '" in system
    assert system.endswith("- The `<answer>` tag must appear at the END of your response.")
    res = env.step(answer("echo hi"))
    assert res.observation == f"Step 2/12\n\nhi\n\n{prompt}" and res.feedback == "hi"
    res = env.step(answer("cd .."))
    assert res.observation.startswith("Step 3/12\n\n") and res.observation.count("\n\n") == 1
    res = env.step(answer(f"ssh {env.task.user}@{env.task.host}"))
    assert res.observation.endswith(f"\n\n{env.task.user}@{env.task.host}:~$ ")


def test_success_ends_at_once_and_failure_after_the_budget():
    env = forced("delete", "linux")
    path = "/" + "/".join(env.task.checks[0].path)
    cmd = f"rm {path}" if env.task.checks[0].machine == "local" else f"ssh {env.task.user}@{env.task.host} rm {path}"
    res = env.step(answer("ls"))
    assert not res.done
    res = env.step(answer(cmd))
    assert (res.done, res.reward, res.turns_used, res.format_error) == (True, 1.0, 2, False)
    assert env.final_feedback() == SUCCESS_FEEDBACK
    env = forced("delete", "linux")
    for k in range(12):
        res = env.step(answer("pwd"))
        assert res.done == (k == 11)
    assert res.reward == 0.0 and env.final_feedback() == FAILURE_FEEDBACK and env.step(answer("ls")).done


# ---- scripted solutions of every task type on every OS ----------------------------------------------------------
@pytest.mark.parametrize("os_type", ["windows", "mac", "linux"])
def test_every_task_type_is_solvable_by_the_scripted_solver(os_type):
    """The hint-blind solver (which reads only the prompt) solves every type on every OS, most tasks overall (long
    Windows plans can run out of steps while it probes commands that do not exist there)."""
    total = 0
    for task_type in TASK_TYPES:
        wins = 0
        for seed in range(6):
            env = forced(task_type, os_type, seed)
            policy = pol.hint_blind(seed)
            messages = [
                {"role": "system", "content": env.system_prompt()},
                {"role": "user", "content": env.first_observation()},
            ]
            while True:
                messages.append({"role": "assistant", "content": policy(messages)})
                res = env.step(messages[-1]["content"])
                if res.done:
                    break
                messages.append({"role": "user", "content": res.observation})
            wins += res.reward
        assert wins >= 2, (os_type, task_type, wins)
        total += wins
    assert total >= 0.85 * 6 * len(TASK_TYPES)


# ---- shell semantics -------------------------------------------------------------------------------------------
def test_files_directories_permissions_and_chaining():
    sh = shell()
    assert sh.run("mkdir a/b") == "mkdir: cannot create directory 'a/b': No such file or directory"
    assert sh.run("mkdir -p a/b && cd a/b && touch f && pwd") == "/home/user/a/b"
    assert sh.prompt() == "user@localhost:~/a/b$ "
    assert sh.run("chmod 640 f && ls -l").startswith("-rw-r-----  1 user user        0 Jan 15 10:30 f")
    assert sh.run("chmod u+x f") == "chmod: invalid mode: 'u+x'"
    assert sh.run("cat missing && echo never") == "cat: missing: No such file or directory"
    assert sh.run("cat missing ; echo after") == "cat: missing: No such file or directory\nafter"
    assert sh.run("cp f g && mv g ../h && cd ~ && ls a a/h") == "b/  h\nh"
    assert sh.run("rm a") == "rm: cannot remove 'a': Is a directory"
    assert sh.run("rm -rf a && ls") == ""
    assert "dangerous" in sh.run("rm -rf /") and sh.local.fs.is_dir(("home", "user"))
    assert sh.run("cd ../../../../..; pwd") == "/"
    assert sh.run("echo $HOME $USER ~ '$HOME'") == "/home/user user /home/user $HOME"
    assert sh.run("ls | grep x") == PIPE_ERROR and sh.run("echo x > f") == REDIRECT_ERROR
    assert sh.run("echo 'a > b' \"c | d\"") == "a > b c | d"
    assert sh.run("echo $(whoami)") == SUBSTITUTION_ERROR and sh.run("echo `id`") == SUBSTITUTION_ERROR
    assert sh.run("echo 'open") == "bash: syntax error: unexpected end of file"
    assert sh.run("foo") == "bash: foo: command not found"


def test_windows_syntax_and_messages():
    sh = shell("windows")
    assert sh.prompt() == "C:\\Users\\user>"
    assert sh.run("mkdir docs\\x\\y && cd %USERPROFILE%\\docs && cd") == "C:\\Users\\user\\docs"
    assert sh.run("mkdir x") == "A subdirectory or file x already exists."
    assert sh.run("tar -cf a.tar x") == (
        "'tar' is not recognized as an internal or external command,\noperable program or batch file."
    )
    for cmd in ("chmod 600 x", "touch f", "rsync a b", "gzip f", "gunzip f.gz"):
        assert "is not recognized" in sh.run(cmd)
    assert sh.run("type nothing.txt") == "The system cannot find the file specified."
    assert sh.run("cd C:\\nowhere") == "The system cannot find the path specified."
    assert sh.run("del C:\\Users\\user\\nothing.txt") == "Could Not Find C:\\Users\\user\\nothing.txt"
    sh.local.fs.put(("C", "Users", "user", "docs", "a.txt"), File("hello"))
    assert sh.run("copy a.txt b.txt") == "        1 file(s) copied."
    assert sh.run("ren b.txt c.txt && dir").count("<DIR>") == 1
    assert sh.run("type C:/Users/user/docs/c.txt") == "hello"
    assert "Directory of C:\\Users\\user\\docs" in sh.run("dir")
    sh.local.fs.put(("C", "Users", "user", "docs", "x", "y", "z.txt"), File("z"))
    assert sh.run("zip -r x.zip x && unzip -l x.zip").startswith("  adding: x/y/z.txt")
    assert sh.run("unzip x.zip -d C:\\Users\\user\\out && type ..\\out\\x\\y\\z.txt").endswith("z")


def test_ssh_scp_rsync_and_remote_only_rules():
    sh = shell()
    sh.local.fs.put(("home", "user", "r.txt"), File("R"))
    assert sh.run("ssh admin@10.0.0.1") == "ssh: connect to host 10.0.0.1 port 22: Connection refused"
    assert sh.run("ssh root@192.168.1.50") == "Permission denied (publickey,password)."
    assert sh.run("scp r.txt admin@192.168.1.50:/opt/") == "scp: admin@192.168.1.50:/opt/: No such file or directory"
    assert sh.run("cp r.txt nowhere/") == "cp: cannot copy 'r.txt' to 'nowhere/': Not a directory"
    assert sh.run("scp r.txt admin@192.168.1.50:").startswith("r.txt")
    assert sh.remote.fs.get(("home", "admin", "r.txt")).content == "R"
    assert sh.run("ssh admin@192.168.1.50 'mkdir -p /opt/x && cd /opt/x && pwd'") == "/opt/x"
    assert not sh.connected and sh.prompt() == "user@localhost:~$ "
    assert sh.run("ssh admin@192.168.1.50").startswith("Welcome to Ubuntu")
    assert sh.prompt() == "admin@192.168.1.50:~$ " and sh.run("echo $IP $HOME") == "192.168.1.50 /home/admin"
    assert sh.run("scp r.txt x") == "bash: scp must be run from local machine. Use 'exit' to disconnect first."
    assert sh.run("chmod 700 r.txt && ls -l r.txt").startswith("-rwx------  1 admin admin")
    assert sh.run("exit") == "Connection to 192.168.1.50 closed." and not sh.connected
    assert sh.run("rsync -avz admin@192.168.1.50:/opt/x ~/").startswith("sending incremental file list")
    assert sh.local.fs.is_dir(("home", "user", "x"))


def test_archives_record_list_and_extract_entries():
    sh = shell()
    for name in ("a.txt", "b.txt"):
        sh.local.fs.makedirs(("home", "user", "proj"))
        sh.local.fs.put(("home", "user", "proj", name), File(name.upper()))
    assert sh.run("tar -czf p.tar.gz proj && tar -tzf p.tar.gz") == "proj/a.txt\nproj/b.txt"
    assert sh.local.fs.get(("home", "user", "p.tar.gz")).archive == "tar.gz"
    assert sh.run("mkdir out && tar -xzf p.tar.gz -C out && cat out/proj/b.txt") == "B.TXT"
    assert sh.run("zip p.zip proj") == "  adding: proj/ (stored 0%)"
    assert sh.local.fs.get(("home", "user", "p.zip")).entries == {}
    assert sh.run("zip -r p.zip proj && unzip -o p.zip -d u && cat u/proj/a.txt").endswith("A.TXT")
    assert "not\n  a zipfile" in sh.run("unzip p.tar.gz")
    assert sh.run("tar -xf p.zip").startswith("tar: This does not look like a tar archive")
    assert sh.run("tar -cf q.tar proj && gzip q.tar && tar -tf q.tar.gz") == "proj/a.txt\nproj/b.txt"
    assert sh.run("gunzip q.tar.gz && ls q.tar") == "q.tar"
    assert sh.run("gzip -r proj && ls proj") == "a.txt.gz  b.txt.gz"  # the classic mistake: files compressed in place
    assert sh.run("gunzip proj/a.txt.gz && cat proj/a.txt") == "A.TXT"
    assert sh.run("cat p.zip") == "[Binary file: zip archive with 2 entries]"


def test_work_is_bounded():
    sh = shell()
    sh.run("mkdir -p d && touch d/f")
    t0 = time.perf_counter()
    for _ in range(12):
        out = sh.run(" && ".join(["cp -r d d/x"] * 16))
    assert time.perf_counter() - t0 < 5.0
    assert sh.local.fs.nodes <= MAX_NODES
    assert "too many chained commands" in sh.run(";".join(["pwd"] * 40))
    assert "too long" in sh.run("echo " + "x" * 5000)
    assert "No space left on device" in out or "File name too long" in out or sh.local.fs.nodes <= MAX_NODES


# ---- malformed actions -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    ["", "ls", "<answer></answer>", "<answer>   </answer>", "<answer>ls</answer><answer>pwd</answer>", "<answer>ls"],
)
def test_format_errors_end_the_episode_with_zero_and_the_flag(text):
    env = make_env({"seed": 3})
    res = env.step(text)
    assert (res.done, res.reward, res.format_error, res.turns_used) == (True, 0.0, True, 1)
    assert res.feedback == FORMAT_ERROR_OUTPUT and env.final_feedback() == FORMAT_FAILURE_FEEDBACK


HOSTILE = [
    "rm -rf /",
    "rm -rf / --no-preserve-root",
    "rm -rf ~ ../../.. /home /tmp /etc",
    "rm -rf ../../../../../../../../tmp",
    "$(touch pwned)",
    "`touch pwned`",
    "echo pwned > pwned.txt",
    "cat < /etc/passwd",
    "ls | sh",
    "touch ../../pwned && mkdir -p ../../../pwned_dir",
    "cd ../../../../.. && rm -rf *",
    "python -c 'import os; os.system(\"touch pwned\")'",
    "bash -c 'touch pwned'",
    "sh -c 'touch pwned' ; exec rm -rf /",
    "ssh admin@127.0.0.1 'touch /tmp/pwned'",
    "scp /etc/passwd admin@192.168.1.50:/tmp/",
    "tar -czf /tmp/pwned.tar.gz / ; unzip -o /etc/passwd -d /",
    "gzip -r / ; chmod -R 000 /",
    "cp -r / /x && mv / /y",
    "eval 'rm -rf /'",
    "__import__('os').system('touch pwned')",
    "&& ; ;; && &&",
    "cd %SYSTEMROOT% && del /s /q C:\\*",
    "echo ${PATH} $HOME %PATH% ~root",
]


def _snapshot(root: Path):
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mode) for p in root.rglob("*"))


def _children():
    pid = os.getpid()
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids += (task / "children").read_text().split()
        except OSError:
            pass
    return sorted(kids)


@pytest.fixture
def host_guard(tmp_path, monkeypatch):
    """A sandbox dir as cwd with files in it, and every process-spawning entry point made to fail loudly."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "keep.txt").write_text("keep")
    (tmp_path / "top.txt").write_text("top")
    monkeypatch.chdir(tmp_path / "a" / "b")

    def forbidden(*args, **kwargs):
        raise AssertionError("the simulator tried to reach the host")

    for name in ("system", "popen", "execv", "execve", "execvp", "fork", "spawnv", "posix_spawn", "remove", "unlink"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    return tmp_path


_FUZZ_WORDS = st.sampled_from(
    ["rm", "-rf", "/", "..", "../../", "~", "$(", ")", "`", ">", "<", "|", "&&", ";", "'", '"', "cp", "mv", "tar",
     "-czf", "x.tar.gz", "zip", "-r", "unzip", "-d", "gzip", "ssh", "scp", "admin@192.168.1.50:", "cd", "mkdir",
     "-p", "chmod", "777", "*", "C:\\", "%USERPROFILE%", "$HOME", "exit", "\n", "cat", "/etc/passwd", "del"]
)  # fmt: skip


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.one_of(st.sampled_from(HOSTILE), st.lists(_FUZZ_WORDS, max_size=14).map(" ".join), st.text(max_size=80)),
        min_size=3,
        max_size=8,
    ),
    st.integers(0, 10_000),
)
def test_hostile_commands_never_touch_the_host(host_guard, commands, seed):
    before, cwd, kids = _snapshot(host_guard), os.getcwd(), _children()
    env = make_env({"seed": seed, "setting": "per_pack" if seed % 2 else "default"}, pack_seed=seed)
    for cmd in commands:
        res = env.step(answer(cmd))
        assert isinstance(res.observation, str) and res.reward in (0.0, 1.0)
        if res.done:
            break
    assert _snapshot(host_guard) == before and os.getcwd() == cwd and _children() == kids


def test_the_package_has_no_way_to_reach_the_host():
    forbidden = ("subprocess", "os.system", "eval(", "exec(", "open(", "import os", "shutil", "socket", "pathlib")
    for path in PKG.glob("*.py"):
        source = path.read_text()
        assert not [w for w in forbidden if w in source], path.name


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    st.one_of(
        st.text(max_size=400),
        st.builds(answer, st.text(max_size=200)),
        st.builds(answer, st.lists(_FUZZ_WORDS, max_size=30).map(" ".join)),
        st.sampled_from(["<answer>" * 50, "<answer>" + "x" * 70_000 + "</answer>", answer("a" * 5000)]),
    ),
    st.integers(0, 1000),
)
def test_step_never_raises_and_costs_bounded_time(text, seed):
    steps_never_raise(make_env({"seed": seed}), text, seconds=1.0)


# ---- policies and hint use -------------------------------------------------------------------------------------
def test_policy_landmarks_match_the_cod_core():
    from cod_envs import scripted

    assert (scripted.HINT_START, scripted.HINT_END) == (hints.HINT_START, hints.HINT_END)
    assert set(POLICIES) == {"oracle", "hint-blind", "random"}
    assert POLICIES["random"](0)([{"role": "user", "content": "x"}]).startswith("<answer>")


def _lifecycles(policy_factory, n_packs, setting, size=8):
    return lifecycles(
        ENV, make_rows(size * n_packs, seed=0, split="test", setting=setting), policy_factory, n_packs, size
    )


def test_oracle_hints_state_only_verified_patterns():
    for lc in _lifecycles(pol.oracle, 20, "per_pack"):
        assert all(r == 0.0 for r in lc.update_rewards)
        for hint in lc.hints[1:]:
            good, bad = pol.parse_hint(hint)
            for (label, _op), pattern in good.items():
                assert label in ("Windows", "macOS", "Linux", "Remote Linux") and "<" in pattern
            assert all(cmds <= {"tar", "powershell", "pscp", "rsync", "gzip"} for cmds in bad.values())
        solve, update = lc.episodes[0], lc.episodes[1]
        assert f"Environment feedback: {solve.feedback}" in update.prompt[-1]["content"]


def _later(rewards):
    return [sum(r[1:]) / (len(r) - 1) for r in rewards]


def test_per_pack_oracle_beats_hint_blind_at_later_positions():
    """per_pack (OS, host and user shared by the pack), 400 packs of 8: the oracle's later positions beat
    hint-blind's (paired over the same packs; position 0 is identical), and it needs fewer turns."""
    oracle, blind = _lifecycles(pol.oracle, 400, "per_pack"), _lifecycles(pol.hint_blind, 400, "per_pack")
    o, b = [lc.solve_rewards for lc in oracle], [lc.solve_rewards for lc in blind]
    assert [r[0] for r in o] == [r[0] for r in b]
    diff = [x - y for x, y in zip(_later(o), _later(b), strict=True)]
    mean = sum(diff) / len(diff)
    half = 1.96 * math.sqrt(sum((d - mean) ** 2 for d in diff) / (len(diff) - 1) / len(diff))
    assert mean - half > 0, (mean, half, position_stats(o).mean, position_stats(b).mean)

    def turns(lcs):
        return sum(e.turns_used for lc in lcs for e in lc.episodes if e.kind == "solve" and e.position > 0)

    assert turns(oracle) < 0.9 * turns(blind)
    _, (lo, hi) = gap_stats(b)
    assert lo <= 0.0 <= hi  # hint-blind is flat


def test_default_setting_curves_are_reported():
    """Default setting (tasks largely unrelated, as in the reference): no hint-use requirement; the curves exist."""
    means = {}
    for name, factory in POLICIES.items():
        rewards = [lc.solve_rewards for lc in _lifecycles(factory, 60, "default")]
        means[name] = position_stats(rewards).mean
        assert len(means[name]) == 8 and all(0.0 <= m <= 1.0 for m in means[name])
        gap_stats(rewards)
    assert sum(means["random"]) < sum(means["hint-blind"]) <= sum(means["oracle"]) + 0.2


def _height(node) -> int:
    stack, best = [(node, 1)], 0
    while stack:
        current, depth = stack.pop()
        best = max(best, depth)
        stack.extend((c, depth + 1) for c in getattr(current, "children", {}).values())
    return best


def test_moving_trees_under_each_other_cannot_nest_past_the_depth_cap():
    """Issue 13: ``mv`` only checked the destination path, so alternately moving two deep trees under each other
    built a tree hundreds of levels deep and ``count_nodes`` raised RecursionError out of ``step``."""
    env = forced("upload", "linux")
    a, b = "/".join(["a"] * 46), "/".join(["b"] * 46)
    segments, src, dst = [], "/t", f"/u/{b}"
    for _ in range(24):
        segments.append(f"mv {src} {dst}")
        segments.append(f"mkdir -p /{src[1:]}/{a if src == '/t' else b}")
        src, dst = ("/u", f"/t/{a}") if src == "/t" else ("/t", f"/u/{b}")
    lines = [f"cd / && mkdir -p /t/{a} && mkdir -p /u/{b}"]
    lines += [" ; ".join(segments[i : i + 8]) for i in range(0, len(segments), 8)]
    lines += ["rm -rf /t /u", "ls /"]
    for line in lines:
        res = env.step(answer(line))
        assert isinstance(res.feedback, str) and not res.format_error
    assert _height(env.local.fs.root) <= vfs.MAX_DEPTH + 1
    out = shell().run(f"mkdir -p /t/{a} /u/{b} && mv /t /u/{b}")
    assert "File name too long" in out


def test_a_move_that_cannot_be_placed_leaves_its_source():
    """A failed ``mv`` (here: too deep for the file system) must not lose the tree it was moving."""
    a, b = "/".join(["a"] * 46), "/".join(["b"] * 46)
    sh = shell()
    out = sh.run(f"mkdir -p /t/{a} /u/{b} && touch /t/{a}/keep.txt && mv /t /u/{b}")
    assert "File name too long" in out
    assert sh.machine.fs.get(sh.machine.resolve(f"/t/{a}/keep.txt")) is not None
