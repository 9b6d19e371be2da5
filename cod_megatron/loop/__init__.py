"""The training loop's parts that ``train.py`` wires: engines and trainer start-up, the warm start, the synthetic
smoke path, throughput accounting and preemption handling."""
