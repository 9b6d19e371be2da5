"""The launcher: a recipe onto Slurm (NeMo-Run's executor, Ray on Slurm) or a local Ray cluster."""
