"""CoD environments (plain values in and out; nothing from cod_megatron); imported as ``cod_envs``."""
