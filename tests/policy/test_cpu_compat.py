"""The CPU accommodations for megatron-core: what each one does, idempotence, and clean removal."""

import pytest
import torch

from cod_megatron.policy import cpu_compat

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the accommodations apply only without CUDA")


@pytest.fixture
def installed():
    assert cpu_compat.install(seed=3) is True
    yield
    cpu_compat.uninstall()


def test_cuda_device_keywords_land_on_cpu(installed):
    assert torch.zeros([], device="cuda").device.type == "cpu"
    assert torch.empty(3, device=torch.cuda.current_device()).device.type == "cpu"
    assert torch.ones(1).to(torch.cuda.current_device()).device.type == "cpu"  # positional, no mode needed
    assert torch.ones(2, device=torch.device("cuda", 0)).device.type == "cpu"
    t = torch.ones(2)
    assert t.cuda() is t
    torch.cuda.synchronize()
    torch.cuda.current_stream().wait_stream(None)


def test_type_name_is_reported_as_cuda(installed):
    assert torch.ones(1).type() == "torch.cuda.FloatTensor"
    assert torch.ones(1).type(torch.float64).dtype == torch.float64  # explicit conversions untouched


def test_install_twice_then_uninstall_restores_torch():
    original = torch.cuda.current_device
    cpu_compat.install()
    cpu_compat.install()
    assert cpu_compat.installed()
    cpu_compat.uninstall()
    assert not cpu_compat.installed()
    assert torch.cuda.current_device is original
    assert torch.ones(1).type() == "torch.FloatTensor"
    with pytest.raises((RuntimeError, AssertionError)):
        torch.zeros([], device="cuda")
