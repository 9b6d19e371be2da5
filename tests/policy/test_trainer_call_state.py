"""PolicyTrainer keeps no per-call values: a step's denominators, forward-only flag, loss scale and log-prob
collection are arguments of the forward step (``StepCall``), so nothing of one pass outlives it."""

from tests.dist import free_port
from tests.policy.parallel_utils import batches, tiny_cfg


def test_train_evaluate_and_logprobs_leave_the_trainer_attributes_as_built():
    from cod_megatron.config import finalize
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.trainer import PolicyTrainer

    cfg = tiny_cfg("model.num_layers=1", "model.fused_lm_head=false")
    layout = finalize(cfg)
    init_distributed(layout, master_port=free_port())
    try:
        trainer = PolicyTrainer(cfg, layout)
        built = set(vars(trainer))
        mbs = batches(cfg.model.vocab_size, n=2)
        trainer.train_step(mbs)
        trainer.evaluate(mbs)
        logp = trainer.compute_logprobs(mbs)
        assert [len(x) for x in logp] == [b.num_tokens for b in mbs]
        assert set(vars(trainer)) - built == set()  # "step" changes value, no attribute appears
    finally:
        destroy_distributed()
