"""CoD policy losses (docs/cod.md section 6): hand-computed values, naive per-sample loops and split invariance."""

from __future__ import annotations

import math

import pytest
import torch

from cod_megatron.cod.losses import (
    LossDenominators,
    LossOptions,
    aggregation_weights,
    compute_denominators,
    kl_penalty,
    policy_loss,
    ppo_loss,
    rec_loss,
    rec_one_side_mask,
    rollout_correction,
    rollout_mismatch,
)
from cod_megatron.config import AlgorithmConfig
from cod_megatron.data.denominators import check_samples_known

AGG_MODES = ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum"]


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


# ---- 6.2 / 6.3 --------------------------------------------------------------------------------------------------
# (A, rho, M): eps_low = eps_high = 0.2, bounds inclusive.
REC_TRUTH_TABLE = [
    (1.0, 1.1, True),  # A > 0, ratio inside
    (1.0, 1.2, True),  # A > 0, exactly at 1 + eps_high
    (1.0, 1.3, False),  # A > 0, ratio above 1 + eps_high: masked
    (1.0, 0.5, True),  # A > 0, ratio below 1 - eps_low: one-side, kept
    (-1.0, 0.9, True),  # A < 0, ratio inside
    (-1.0, 0.8, True),  # A < 0, exactly at 1 - eps_low
    (-1.0, 0.7, False),  # A < 0, ratio below 1 - eps_low: masked
    (-1.0, 2.0, True),  # A < 0, ratio above 1 + eps_high: one-side, kept
    (0.0, 5.0, True),  # A = 0 satisfies the A <= 0 branch
    (0.0, 0.1, True),  # A = 0 satisfies the A >= 0 branch
]


def test_rec_mask_truth_table():
    adv = t(*[a for a, _, _ in REC_TRUTH_TABLE])
    ratio = t(*[r for _, r, _ in REC_TRUTH_TABLE])
    expected = torch.tensor([m for _, _, m in REC_TRUTH_TABLE])
    assert torch.equal(rec_one_side_mask(ratio, adv, 0.2, 0.2), expected)


def test_rec_mask_asymmetric_bounds():
    adv = t(1.0, 1.0, -1.0, -1.0)
    ratio = t(1.25, 1.35, 0.95, 0.85)
    # eps_high = 0.3 keeps 1.25 and drops 1.35; eps_low = 0.1 keeps 0.95 and drops 0.85
    assert rec_one_side_mask(ratio, adv, 0.1, 0.3).tolist() == [True, False, True, False]


@pytest.mark.parametrize("importance_weight", [False, True])
def test_rec_loss_values_and_gradient(importance_weight):
    adv = t(2.0, 2.0, -1.0, -1.0)
    rho = [1.1, 1.5, 0.9, 0.5]  # kept, masked, kept, masked
    old = t(-1.0, -2.0, -0.5, -3.0)
    logp = (old + torch.log(t(*rho))).requires_grad_()
    loss, clipped = rec_loss(logp, old, adv, eps_low=0.2, eps_high=0.2, importance_weight=importance_weight)
    loss.sum().backward()
    w = rho if importance_weight else [1.0] * 4
    keep = [1.0, 0.0, 1.0, 0.0]
    lp = logp.detach().tolist()
    expected_loss = [-a * k * wi * x for a, k, wi, x in zip([2.0, 2.0, -1.0, -1.0], keep, w, lp, strict=True)]
    expected_grad = [-a * k * wi for a, k, wi in zip([2.0, 2.0, -1.0, -1.0], keep, w, strict=True)]
    torch.testing.assert_close(loss.detach(), t(*expected_loss))
    torch.testing.assert_close(logp.grad, t(*expected_grad))
    assert clipped.tolist() == [False, True, False, True]


def test_rec_clip_mode_none_keeps_everything():
    adv, old = t(1.0, -1.0), t(0.0, 0.0)
    logp = torch.log(t(3.0, 0.1)).requires_grad_()
    loss, clipped = rec_loss(logp, old, adv, eps_low=0.2, eps_high=0.2, clip_mode="none")
    loss.sum().backward()
    torch.testing.assert_close(logp.grad, t(-1.0, 1.0))
    assert not clipped.any()


# ---- 6.4 --------------------------------------------------------------------------------------------------------
def test_ppo_dual_clip_hand_values():
    # rows: (A, rho) -> (loss, d loss / d logp, clipped, dual); eps 0.2, c = 3
    adv = t(1.0, 1.0, -1.0, -1.0, -1.0)
    rho = t(1.5, 0.5, 1.5, 4.0, 0.5)
    logp = torch.log(rho).requires_grad_()
    loss, clipped, dual = ppo_loss(logp, torch.zeros(5, dtype=torch.float64), adv, eps_low=0.2, eps_high=0.2)
    loss.sum().backward()
    # A=1, rho=1.5: max(-1.5, -1.2) = -1.2 (clipped, flat)
    # A=1, rho=0.5: max(-0.5, -0.8) = -0.5, grad -A rho = -0.5
    # A=-1, rho=1.5: max(1.5, 1.2) = 1.5 < 3, grad -A rho = 1.5
    # A=-1, rho=4: max(4, 1.2) = 4 -> dual clip min(4, 3) = 3 (flat)
    # A=-1, rho=0.5: max(0.5, 0.8) = 0.8 (clipped, flat)
    torch.testing.assert_close(loss.detach(), t(-1.2, -0.5, 1.5, 3.0, 0.8))
    torch.testing.assert_close(logp.grad, t(0.0, -0.5, 1.5, 0.0, 0.0))
    assert clipped.tolist() == [True, False, False, False, True]
    assert dual.tolist() == [False, False, False, True, False]


def test_ppo_without_dual_clip_and_positive_advantage_unbounded():
    logp = torch.log(t(10.0, 10.0))
    loss, _, dual = ppo_loss(logp, t(0.0, 0.0), t(-2.0, 2.0), eps_low=0.2, eps_high=0.2, dual_clip=None)
    torch.testing.assert_close(loss, t(20.0, -2.4))
    assert not dual.any()
    loss, _, dual = ppo_loss(logp, t(0.0, 0.0), t(-2.0, 2.0), eps_low=0.2, eps_high=0.2, dual_clip=3.0)
    torch.testing.assert_close(loss, t(6.0, -2.4))  # the dual clip only bounds negative advantages
    assert dual.tolist() == [True, False]


def test_ppo_gradient_equals_is_gradient_without_dual_clip():
    # 6.3: the IS-variant gradient equals the PPO-clip gradient (no dual clip)
    g = torch.Generator().manual_seed(0)
    old = torch.randn(64, generator=g, dtype=torch.float64)
    adv = torch.randn(64, generator=g, dtype=torch.float64)
    base = old + 0.4 * torch.randn(64, generator=g, dtype=torch.float64)
    grads = []
    for fn in ("ppo", "is"):
        logp = base.clone().requires_grad_()
        if fn == "ppo":
            loss = ppo_loss(logp, old, adv, eps_low=0.2, eps_high=0.2, dual_clip=None)[0]
        else:
            loss = rec_loss(logp, old, adv, eps_low=0.2, eps_high=0.2, importance_weight=True)[0]
        loss.sum().backward()
        grads.append(logp.grad)
    torch.testing.assert_close(grads[0], grads[1])


# ---- 6.5 --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("estimator", "expected"),
    [
        ("k1", [0.5, -0.3, -30.0]),
        ("k2", [0.125, 0.045, 450.0]),
        ("k3", [math.exp(-0.5) - 0.5, math.exp(0.3) - 1.3, 10.0]),  # the last one clamped to 10
        ("low_var_kl", [0.10653065971263342, 0.04985880757600310, 10.0]),
    ],
)
def test_kl_estimators_hand_values(estimator, expected):
    logp, ref = t(0.5, -0.3, -30.0), t(0.0, 0.0, 0.0)
    torch.testing.assert_close(kl_penalty(logp, ref, estimator), t(*expected))


def test_kl_k2_gradient_is_delta():
    logp = t(0.5, -0.3).requires_grad_()
    kl_penalty(logp, t(0.0, 0.0), "k2").sum().backward()
    torch.testing.assert_close(logp.grad, t(0.5, -0.3))


# ---- 6.7 --------------------------------------------------------------------------------------------------------
def test_token_tis_and_mis():
    old = torch.log(t(1.5, 3.0, 0.5))
    roll = t(0.0, 0.0, 0.0)
    mask, ids = t(1, 1, 1), torch.tensor([0, 0, 1])
    w, corrected = rollout_correction(old, roll, mask, ids, mode="token_tis", cap=2.0)
    torch.testing.assert_close(w, t(1.5, 2.0, 0.5))
    assert corrected.tolist() == [False, True, False]
    w, corrected = rollout_correction(old, roll, mask, ids, mode="token_mis", cap=2.0)
    torch.testing.assert_close(w, t(1.0, 0.0, 1.0))
    assert corrected.tolist() == [False, True, False]


def test_sequence_tis_and_mis():
    old = torch.log(t(1.5, 3.0, 0.5, 7.0))
    roll = t(0.0, 0.0, 0.0, 0.0)
    mask, ids = t(1, 1, 1, 0), torch.tensor([4, 4, 9, 9])
    # sample 4: 1.5 * 3 = 4.5 -> 2 (truncated); sample 9: 0.5 (the masked-out 7.0 does not count)
    w, corrected = rollout_correction(old, roll, mask, ids, mode="seq_tis", cap=2.0)
    torch.testing.assert_close(w, t(2.0, 2.0, 0.5, 0.5))
    assert corrected.tolist() == [True, True, False, False]
    w, _ = rollout_correction(old, roll, mask, ids, mode="seq_mis", cap=2.0)
    torch.testing.assert_close(w, t(0.0, 0.0, 1.0, 1.0))


def test_rollout_mismatch_metrics():
    kl, diff = rollout_mismatch(torch.log(t(1.5, 1.0)), t(0.0, 0.0))
    torch.testing.assert_close(kl, t(0.5 - math.log(1.5), 0.0))
    torch.testing.assert_close(diff, t(math.log(1.5), 0.0))


def test_tis_weight_scales_policy_loss_and_has_no_gradient_through_old():
    cfg = AlgorithmConfig()
    logp = t(-1.0, -1.0).requires_grad_()
    old, adv, mask, ids = t(-1.0, -1.0), t(1.0, 1.0), t(1, 1), torch.tensor([0, 1])
    roll = old - torch.log(t(1.5, 4.0))  # token weights 1.5 and min(4, 2) = 2
    denom = compute_denominators([mask], [ids])
    loss, n, m = policy_loss(
        logp, old, adv, mask, ids, denom, cfg, rollout_logp=roll, options=LossOptions(rollout_correction="token_tis")
    )
    loss.backward()
    torch.testing.assert_close(logp.grad, t(-1.5, -2.0))  # token-mean * N = plain sum of -A w
    torch.testing.assert_close(m["rollout_weight"], t(3.5, 2.0))
    torch.testing.assert_close(m["rollout_corrected_frac"], t(1.0, 2.0))


# ---- 6.8 / 6.9: a toy step of samples ---------------------------------------------------------------------------
def toy_step(seed: int, n_samples: int = 7):
    """Samples of random length; sample 2 has no loss token (not in B'); ids are sparse and global."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for s in range(n_samples):
        n = int(torch.randint(2, 9, (1,), generator=g))
        mask = (torch.rand(n, generator=g) > 0.3).double()
        mask[0] = 0.0  # a prompt token
        if s == 2:
            mask.zero_()
        old = -torch.rand(n, generator=g, dtype=torch.float64) * 3
        rows.append(
            {
                "id": 10 * s + 3,
                "mask": mask,
                "old": old,
                "logp": old + 0.3 * torch.randn(n, generator=g, dtype=torch.float64),
                "ref": old + 0.2 * torch.randn(n, generator=g, dtype=torch.float64),
                "ent": torch.rand(n, generator=g, dtype=torch.float64) * 2,
                "adv": float(torch.randn(1, generator=g)),
            }
        )
    return rows


def flat(rows):
    cat = {k: torch.cat([r[k] for r in rows]) for k in ("mask", "old", "logp", "ref", "ent")}
    cat["ids"] = torch.cat([torch.full((len(r["mask"]),), r["id"]) for r in rows])
    cat["adv"] = torch.cat([torch.full((len(r["mask"]),), r["adv"], dtype=torch.float64) for r in rows])
    return cat


def naive_total_loss(rows, mode: str, kl_coef: float, entropy_coef: float, eps: float = 0.2) -> float:
    """Section 6.9 with REC and k2, written as per-sample Python loops over floats."""

    def per_token(r, i):
        a, rho = r["adv"], math.exp(float(r["logp"][i] - r["old"][i]))
        keep = (a >= 0 and rho <= 1 + eps) or (a <= 0 and rho >= 1 - eps)
        pg = -a * float(keep) * float(r["logp"][i])
        kl = 0.5 * float(r["logp"][i] - r["ref"][i]) ** 2
        return pg + kl_coef * kl - entropy_coef * float(r["ent"][i])

    sample_sums, sample_counts = [], []
    for r in rows:
        toks = [i for i in range(len(r["mask"])) if r["mask"][i] == 1]
        if toks:
            sample_sums.append(sum(per_token(r, i) for i in toks))
            sample_counts.append(len(toks))
    if mode == "token_mean":
        return sum(sample_sums) / sum(sample_counts)
    if mode == "seq_mean_token_sum":
        return sum(sample_sums) / len(sample_sums)
    return sum(s / c for s, c in zip(sample_sums, sample_counts, strict=True)) / len(sample_sums)


def run_split(batch, denom, cfg, cuts):
    """Megatron's chain: per-chunk losses, summed gradients, one division by the summed num_tokens."""
    logp = batch["logp"].clone().requires_grad_()
    ent = batch["ent"].clone().requires_grad_()
    bounds = [0, *cuts, len(logp)]
    total, count, metric = 0.0, 0, torch.zeros(2, dtype=torch.float64)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        sl = slice(lo, hi)
        loss, n, m = policy_loss(
            logp[sl],
            batch["old"][sl],
            batch["adv"][sl],
            batch["mask"][sl],
            batch["ids"][sl],
            denom,
            cfg,
            entropy=ent[sl],
            ref_logp=batch["ref"][sl],
        )
        loss.backward()
        total, count, metric = total + loss.detach(), count + int(n), metric + m["loss"]
    scale = max(count, 1)
    return total / scale, logp.grad / scale, ent.grad / scale, metric


@pytest.mark.parametrize("mode", AGG_MODES)
def test_policy_loss_matches_naive_per_sample_loop(mode):
    rows = toy_step(seed=1)
    batch = flat(rows)
    cfg = AlgorithmConfig(loss_agg=mode, kl_coef=0.3, kl_estimator="k2", entropy_coef=0.05)
    denom = compute_denominators([batch["mask"]], [batch["ids"]])
    value, _, _, metric = run_split(batch, denom, cfg, cuts=[])
    expected = naive_total_loss(rows, mode, kl_coef=0.3, entropy_coef=0.05)
    assert value.item() == pytest.approx(expected, rel=1e-12)
    assert (metric[0] / metric[1]).item() == pytest.approx(expected, rel=1e-12)  # trainer's sum / count


@pytest.mark.parametrize("mode", AGG_MODES)
def test_aggregation_weights_match_naive_loop(mode):
    rows = toy_step(seed=2)
    batch = flat(rows)
    denom = compute_denominators([batch["mask"]], [batch["ids"]])
    x = torch.randn(len(batch["mask"]), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = (aggregation_weights(batch["mask"], batch["ids"], denom, mode) * x).sum().item()
    sums, counts, off = [], [], 0
    for r in rows:
        vals = [float(x[off + i]) for i in range(len(r["mask"])) if r["mask"][i] == 1]
        off += len(r["mask"])
        if vals:
            sums.append(sum(vals))
            counts.append(len(vals))
    expected = {
        "token_mean": sum(sums) / sum(counts),
        "seq_mean_token_sum": sum(sums) / len(sums),
        "seq_mean_token_mean": sum(s / c for s, c in zip(sums, counts, strict=True)) / len(sums),
    }[mode]
    assert got == pytest.approx(expected, rel=1e-12)
    assert denom.num_sequences == len(rows) - 1  # sample 2 is not in B'


@pytest.mark.parametrize("policy", ["rec", "is", "ppo"])
@pytest.mark.parametrize("mode", AGG_MODES)
def test_split_invariance_micro_batches_and_dp(policy, mode):
    """1/2/3 micro-batches, two 'DP ranks' of two micro-batches, cuts inside samples: same loss and gradient."""
    rows = toy_step(seed=4, n_samples=9)
    batch = {k: v.float() if v.is_floating_point() else v for k, v in flat(rows).items()}  # fp32, as trained
    cfg = AlgorithmConfig(policy_loss=policy, loss_agg=mode, kl_coef=0.1, entropy_coef=0.01)
    T = len(batch["mask"])
    # denominators come from the whole step (every micro-batch of every rank), before any split
    denom = compute_denominators(
        [batch["mask"][: T // 2], batch["mask"][T // 2 :]], [batch["ids"][: T // 2], batch["ids"][T // 2 :]]
    )
    ref_loss, ref_g, ref_ge, _ = run_split(batch, denom, cfg, cuts=[])
    splits = {
        "2 micro": [T // 2],
        "3 micro": [T // 3, 2 * T // 3],
        "2 DP x 2 micro": [T // 4, T // 2, 3 * T // 4],  # rank 0 holds the first two chunks, rank 1 the rest
        "ragged": [1, 5, T - 2],
    }
    for name, cuts in splits.items():
        loss, g, ge, _ = run_split(batch, denom, cfg, cuts)
        torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6, msg=name)
        torch.testing.assert_close(g, ref_g, rtol=1e-6, atol=1e-6, msg=name)
        torch.testing.assert_close(ge, ref_ge, rtol=1e-6, atol=1e-6, msg=name)


def test_gradient_is_gradient_of_the_aggregated_loss():
    """After megatron's division by the summed num_tokens, grad = d(naive aggregated loss)/d logp (REC, seq mean)."""
    rows = toy_step(seed=5)
    batch = flat(rows)
    cfg = AlgorithmConfig(loss_agg="seq_mean_token_mean")
    denom = compute_denominators([batch["mask"]], [batch["ids"]])
    _, g, _, _ = run_split(batch, denom, cfg, cuts=[4, 11])
    expected = []
    for r in rows:
        n_s = int(r["mask"].sum())
        for i in range(len(r["mask"])):
            rho = math.exp(float(r["logp"][i] - r["old"][i]))
            a = r["adv"]
            keep = (a >= 0 and rho <= 1.2) or (a <= 0 and rho >= 0.8)
            expected.append(-a * keep / (n_s * denom.num_sequences) if r["mask"][i] == 1 else 0.0)
    torch.testing.assert_close(g, t(*expected), rtol=1e-12, atol=1e-12)


def test_all_masked_step_gives_zero_loss_and_no_nan():
    cfg = AlgorithmConfig(loss_agg="seq_mean_token_mean")
    mask, ids = torch.zeros(4), torch.arange(4)
    denom = compute_denominators([mask], [ids])
    logp = torch.zeros(4, requires_grad=True)
    loss, n, _ = policy_loss(logp, torch.zeros(4), torch.ones(4), mask, ids, denom, cfg)
    loss.backward()
    assert loss.item() == 0.0 and int(n) == 0
    assert torch.equal(logp.grad, torch.zeros(4))


# ---- malformed input --------------------------------------------------------------------------------------------
def test_malformed_inputs_raise():
    cfg = AlgorithmConfig()
    z3, z4, ids = torch.zeros(3), torch.zeros(4), torch.arange(3)
    denom = compute_denominators([torch.ones(3)], [ids])
    with pytest.raises(ValueError):
        policy_loss(z3, z4, z3, torch.ones(3), ids, denom, cfg)  # old_logp length mismatch
    with pytest.raises(ValueError):
        policy_loss(z3[None], z3[None], z3[None], torch.ones(1, 3), ids[None], denom, cfg)  # not 1-D
    with pytest.raises(ValueError):
        policy_loss(z3, z3, z3, torch.ones(3), ids, denom, cfg, ref_logp=z4)
    with pytest.raises(ValueError):
        policy_loss(z3, z3, z3, torch.ones(3), ids, denom, AlgorithmConfig(kl_coef=0.1))  # no ref_logp
    with pytest.raises(ValueError):
        policy_loss(z3, z3, z3, torch.ones(3), ids, denom, cfg, options=LossOptions(rollout_correction="seq_tis"))
    with pytest.raises(ValueError):
        compute_denominators([torch.ones(3)], [torch.arange(4)])
    with pytest.raises(ValueError):
        check_samples_known(torch.ones(3), ids + 100, denom)  # ids unknown to the step
    with pytest.raises(ValueError):
        kl_penalty(z3, z3, "k4")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ppo_loss(z3, z3, z3, eps_low=0.2, eps_high=0.2, dual_clip=1.0)


def test_denominators_are_exact_counts():
    denom = compute_denominators([t(0, 1, 1, 0), t(1, 0)], [torch.tensor([5, 5, 7, 7]), torch.tensor([7, 2])])
    assert isinstance(denom, LossDenominators)
    assert (denom.num_tokens, denom.num_sequences) == (3, 2)
    assert denom.sample_ids.tolist() == [5, 7] and denom.sample_num_tokens.tolist() == [1, 2]


# ---- no host reads on the hot path (issue 31 item 5) ------------------------------------------------------------
@pytest.mark.parametrize("mode", AGG_MODES)
def test_the_loss_reads_no_value_back_to_the_host(mode):
    """The pg_head path evaluates the loss once per chunk of rows: a host read there (``bool()`` of a check, a
    boolean-mask index) is a device sync per chunk. Forward and backward read nothing; the sample-id check runs once
    per micro-batch on the host (:func:`check_samples_known`)."""
    from tests.host_reads import count_host_reads

    batch = flat(toy_step(seed=4))
    cfg = AlgorithmConfig(loss_agg=mode, kl_coef=0.1, entropy_coef=0.01)
    denom = compute_denominators([batch["mask"]], [batch["ids"]])
    logp = batch["logp"].clone().requires_grad_()
    with count_host_reads() as reads:
        loss, _, _ = policy_loss(
            logp, batch["old"], batch["adv"], batch["mask"], batch["ids"], denom, cfg, entropy=batch["ent"],
            ref_logp=batch["ref"],
        )  # fmt: skip
        loss.backward()
    assert not reads, dict(reads)
