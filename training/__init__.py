"""The pieces of train.py: args (flags), data (CIFAR-10 / digits, on-device loader),
dist (devices, process groups), amp (torch.amp precision), engine (train / evaluate),
checkpoint (atomic step checkpoints), resume (which checkpoint, which flags),
preempt (save schedule, SIGTERM / SIGINT), metrics (CSV / JSON logs)."""
