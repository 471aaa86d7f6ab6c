"""Training: the family interface and registry, shared step helpers, the loop, checkpoints.

Concrete families live in ``genimg.families``; this package never names one.
"""
