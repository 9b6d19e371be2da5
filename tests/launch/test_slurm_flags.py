"""Every srun and sbatch flag of the rendered scripts follows Slurm's option syntax, and a job asks only for what its
recipe needs. NeMo-Run 0.11.1 wrote ``-A=<account> -p=<partition>`` into every container step: real Slurm reads the
partition as ``=batch`` and the first srun of a 70B job failed (``invalid partition specified: =batch``). The bare
render's flags also run on a real Slurm in ``test_slurm_e2e.py``; the Pyxis ones are only checked here."""

import re
import shlex
import sys

import pytest

from cod_megatron.config import ConfigError
from cod_megatron.launch.slurm_job import SlurmSettings
from cod_megatron.launch.submit import job_env, main
from tests.launch.cases import CASES, GPU_CASES, SETTINGS

# srun options the template may use -> whether the option takes a value (Slurm 22.05 `srun --help`; Pyxis's
# container options). Short options must stand alone with their value as the next word: `-w node`, never `-w=node`.
SRUN_LONG = {
    "kill-on-bad-exit": True, "nodes": True, "ntasks": True, "cpus-per-task": True, "gres": True, "mpi": True,
    "chdir": True, "nodelist": True, "overlap": False, "output": True, "container-image": True,
    "container-mounts": True, "container-workdir": True, "container-name": True, "no-container-mount-home": False,
}  # fmt: skip
SRUN_SHORT = {"A": True, "p": True, "w": True, "N": True, "n": True, "c": True, "o": True, "D": True}
STEP_CALL = re.compile(r"(?:^\s*|\$\(|\{ |\b\w+=\S+ )(srun|step|node_step|head_step) +(.*)$")
ARRAY_WORD = re.compile(r"\$\{\w+\[@\]\}")  # "${NODE_FLAGS[@]}": its words are checked where it is built
FLAG_ARRAY = re.compile(r"\b(NODE_FLAGS|HEAD_ENV|own)\+?=\((.*)\)")


def _logical_lines(text: str) -> list[str]:
    """Code lines with backslash continuations and multi-line ``x=( ... )`` arrays joined; comments dropped."""
    out: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.split(" # ")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        pending = f"{pending} {line.strip()}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        if pending.count("(") > pending.count(")"):
            continue
        out.append(pending)
        pending = ""
    return out


def _until_unquoted(text: str, stops: str) -> str:
    """``text`` up to the first of ``stops`` outside quotes and ``${...}`` (where the srun command line ends)."""
    quote, depth = "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif text.startswith("${", i):
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
        elif ch in stops and not depth:
            return text[:i]
    return text


def _srun_words(text: str) -> list[list[str]]:
    """The option words of every srun invocation and srun flag array in the script (up to the step's command)."""
    found = []
    for line in _logical_lines(text):
        array = FLAG_ARRAY.search(line)
        if array:
            found.append(shlex.split(array.group(2)))
            continue
        call = STEP_CALL.search(line)
        if call:
            words = shlex.split(_until_unquoted(call.group(2), "|;)}&>"))
            if call.group(1) == "node_step":
                words = words[1:]  # the node index
            found.append(words)
    return found


def srun_flag_errors(text: str) -> list[str]:
    """What real srun would reject or misread, word by word (empty: none)."""
    errors = []
    for words in _srun_words(text):
        i = 0
        while i < len(words) and (words[i].startswith("-") or ARRAY_WORD.fullmatch(words[i])):
            word = words[i]
            if ARRAY_WORD.fullmatch(word):
                pass
            elif word.startswith("--"):
                name, eq, _ = word[2:].partition("=")
                if name not in SRUN_LONG:
                    errors.append(f"unknown srun option {word!r}")
                elif SRUN_LONG[name] and not eq:
                    i += 1  # `--opt value`
            elif re.fullmatch(r"-[A-Za-z]", word) and word[1] in SRUN_SHORT:
                i += SRUN_SHORT[word[1]]
            else:
                errors.append(f"malformed srun short option {word!r} (short options take no '=')")
            i += 1
    return errors


def sbatch_flag_errors(text: str) -> list[str]:
    """``#SBATCH`` lines must be long options, ``--name`` or ``--name=value``."""
    flags = [ln for ln in text.splitlines() if ln.startswith("#SBATCH")]
    return [ln for ln in flags if not re.fullmatch(r"#SBATCH --[a-z-]+(=\S+)?", ln)]


@pytest.mark.parametrize("name", CASES)
def test_every_srun_and_sbatch_flag_follows_slurm_syntax(rendered, name):
    text = rendered[name]
    assert len(_srun_words(text)) >= 8, "the checker must see the step calls and flag arrays"
    assert srun_flag_errors(text) == []
    assert sbatch_flag_errors(text) == []
    assert not re.search(r"(?<![\w-])-[A-Za-z]=", text), "no short option with '=' anywhere"


def test_the_checker_rejects_what_nemo_run_wrote():
    bad = 'step() { srun "$@"; }\nhead_step --mpi=pmix -A=acct -p=batch --gres=gpu:8 ray status\n'
    assert srun_flag_errors(bad) == [
        "malformed srun short option '-A=acct' (short options take no '=')",
        "malformed srun short option '-p=batch' (short options take no '=')",
    ]
    assert srun_flag_errors("step -w node1 --overlap -p batch hostname") == []
    assert sbatch_flag_errors("#SBATCH -p=batch\n#SBATCH --partition=batch\n") == ["#SBATCH -p=batch"]


@pytest.mark.parametrize("name", GPU_CASES)
def test_gpu_recipes_ask_for_their_gpus_and_no_mpi(rendered, name):
    text = rendered[name]
    assert "#SBATCH --gpus-per-node=8\n" in text and "export COD_GPUS_PER_NODE=8\n" in text
    assert 'NODE_FLAGS+=(--gres="gpu:${COD_GPUS_PER_NODE}")' in text
    assert "COD_SRUN_MPI=" not in text  # --mpi only where asked (PMIx is not built into every Slurm)
    assert "export COD_LAUNCH_MODE=pyxis\n" in text and "--container-image=" in text


def test_a_cpu_recipe_asks_for_no_gpu_and_runs_without_containers(rendered):
    text = rendered["debug_cpu_bare"]
    assert "--gpus" not in text and "#SBATCH --gres" not in text
    assert "export COD_GPUS_PER_NODE=0\n" in text
    assert "export COD_LAUNCH_MODE=bare\n" in text
    assert "export COD_VENV=/shared/venvs/cod\n" in text and "export COD_CODE_DIR=/shared/cod-megatron/src\n" in text
    assert "export COD_CONTAINER_IMAGE" not in text  # the template's pyxis branch reads it; nothing sets it


def test_mpi_is_exported_only_when_asked():
    import cod_recipes
    from cod_megatron.config import finalize

    cfg = cod_recipes.get("llama3_70b_cod_64gpu_h100")
    layout = finalize(cfg)
    assert "COD_SRUN_MPI" not in job_env(cfg, SETTINGS, layout)
    asked = SlurmSettings(**{**vars(SETTINGS), "mpi": "pmix"})
    assert job_env(cfg, asked, layout)["COD_SRUN_MPI"] == "pmix"


@pytest.mark.parametrize(
    ("change", "field"),
    [({"mode": "docker"}, "launch.mode"), ({"mode": "bare", "venv": "/nonexistent"}, "launch.venv"),
     ({"mode": "bare", "venv": sys.prefix, "code_dir": "/"}, "launch.code_dir"), ({"mpi": "pmix -A=x"}, "launch.mpi")],
)  # fmt: skip
def test_bad_launch_settings_fail_with_their_field(change, field):
    with pytest.raises(ConfigError) as e:
        SlurmSettings(**{**vars(SETTINGS), **change}).check()
    assert e.value.field == field


def test_bare_mode_without_a_virtualenv_fails_before_any_render(capsys):
    argv = ["--recipe", "debug_cpu", "--executor", "slurm", "--mode", "bare", "--venv", "/nonexistent", "--dry-run"]
    assert main(argv) == 2
    assert "launch.venv" in capsys.readouterr().err
