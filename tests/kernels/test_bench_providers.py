"""The kernel benches build only the providers asked for (issue 31 item 2).

A provider that is not requested is never imported or built, so one that cannot be (the first kernel's module does
not import, liger-kernel is installed but refuses this Triton, ...) never stops a run that did not ask for it. A
requested provider that cannot be built stops the run with its name; without ``--providers`` every provider is
wanted where it can be built and the others are skipped with a message.
"""

import importlib
import sys
import types

import pytest

BENCHES = ("bench_fused_linear_logprob", "bench_linear_pg_head")


def _break(monkeypatch, what: str) -> None:
    if what == "kernel_import":  # the first kernel's module does not import (ModuleNotFoundError)
        monkeypatch.setitem(sys.modules, "cod_kernels.fused_linear_logprob", None)
    else:  # liger-kernel imports, but building its loss raises (not an ImportError)

        class LigerFusedLinearCrossEntropyLoss:
            def __init__(self, *args, **kwargs):
                raise RuntimeError("liger_kernel: this Triton version is not supported")

        package = types.ModuleType("liger_kernel")
        package.transformers = types.ModuleType("liger_kernel.transformers")
        package.transformers.LigerFusedLinearCrossEntropyLoss = LigerFusedLinearCrossEntropyLoss
        monkeypatch.setitem(sys.modules, "liger_kernel", package)
        monkeypatch.setitem(sys.modules, "liger_kernel.transformers", package.transformers)


@pytest.mark.parametrize("what", ["kernel_import", "liger_build"])
@pytest.mark.parametrize("bench", BENCHES)
def test_an_unrequested_provider_that_cannot_be_built_never_stops_the_bench(tmp_path, monkeypatch, bench, what):
    _break(monkeypatch, what)
    module = importlib.import_module(f"cod_kernels.{bench}")
    rows = module.main(["--cpu-smoke", "--providers", "torch_eager", "--csv", str(tmp_path / "kernels.csv")])
    assert {r["provider"] for r in rows} == {"torch_gemm", "torch_eager"}
    assert {r["mode"] for r in rows if r["provider"] == "torch_eager"} == {"forward", "backward", "full"}


@pytest.mark.parametrize("bench", BENCHES)
def test_a_requested_provider_that_cannot_be_built_is_named(monkeypatch, bench):
    _break(monkeypatch, "liger_build")
    module = importlib.import_module(f"cod_kernels.{bench}")
    with pytest.raises(SystemExit, match="liger_flce.*not supported"):
        module.main(["--cpu-smoke", "--providers", "torch_eager,liger_flce"])


@pytest.mark.parametrize("bench", BENCHES)
def test_an_unknown_provider_is_refused_with_the_known_ones(bench):
    module = importlib.import_module(f"cod_kernels.{bench}")
    with pytest.raises(SystemExit, match="torch_flux.*known: .*torch_eager"):
        module.main(["--cpu-smoke", "--providers", "torch_eager,torch_flux"])
