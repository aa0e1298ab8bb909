"""The pieces of train.py: args (flags), data (CIFAR-10 / digits, on-device loader),
dist (devices, process groups), amp (torch.amp precision), engine (train / evaluate),
checkpoint (atomic save, resume), metrics (CSV / JSON logs)."""
