"""Tests of cod_megatron.cod, and the docs/cod.md 4.6 / 5.3 worked example (S = 4, G = 2) computed by hand."""

import torch

R_X = torch.tensor([[0.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
R_Z = torch.tensor([[0.0, 0.0, 0.0], [0.0, -0.1, 0.0]], dtype=torch.float64)

SOLVE_RETURNS = torch.tensor([[0.75, 1.0, 1.0, 1.0], [0.5, 1 / 3, 0.5, 1.0]], dtype=torch.float64)
UPDATE_RETURNS = torch.tensor([[0.75, 2 / 3, 0.5], [0.25, 0.3, 0.5]], dtype=torch.float64)
SOLVE_ADV = torch.tensor([[0.125, 1 / 3, 0.25, 0.0], [-0.125, -1 / 3, -0.25, 0.0]], dtype=torch.float64)
UPDATE_ADV = torch.tensor([[0.25, 11 / 60, 0.0], [-0.25, -11 / 60, 0.0]], dtype=torch.float64)

# 5.3 response lengths, same layout
SOLVE_TOKENS = torch.tensor([[200, 150, 120, 100], [240, 180, 130, 100]], dtype=torch.float64)
UPDATE_TOKENS = torch.tensor([[80, 80, 80], [90, 90, 80]], dtype=torch.float64)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, atol: float | None = None, rtol: float | None = None):
    """Like ``torch.testing.assert_close`` (same shape, dtype, default tolerances) minus its slow first call."""
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    double = actual.dtype == torch.float64
    atol = (1e-7 if double else 1e-5) if atol is None else atol
    rtol = (1e-7 if double else 1.3e-6) if rtol is None else rtol
    ok = torch.allclose(actual, expected, atol=atol, rtol=rtol)
    assert ok, f"not close (max abs diff {(actual - expected).abs().max().item():.3g}):\n{actual}\nvs\n{expected}"
