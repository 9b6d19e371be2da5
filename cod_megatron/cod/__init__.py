"""CoD credit assignment: rewards, returns over a lifecycle, group baselines and adaptive RED (docs/cod.md 3-5).

Pure torch: tensors in, tensors out, no Megatron, no Ray, no process groups.
"""

from cod_megatron.cod.baselines import group_advantages
from cod_megatron.cod.red import adaptive_red, red_temperature
from cod_megatron.cod.returns import lifecycle_returns
from cod_megatron.cod.rewards import judge_format_keep_mask, solve_reward, total_reward, update_reward

__all__ = [
    "adaptive_red",
    "group_advantages",
    "judge_format_keep_mask",
    "lifecycle_returns",
    "red_temperature",
    "solve_reward",
    "total_reward",
    "update_reward",
]
