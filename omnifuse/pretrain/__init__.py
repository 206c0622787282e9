"""Self-supervised pretraining of omnifuse's own encoders (``omnifuse pretrain``; docs/pretraining.md).

- :mod:`omnifuse.pretrain.text`: a language model over the recurrent text encoder (ULMFiT's recipe).
- :mod:`omnifuse.pretrain.image`: a contrastive objective (SimCLR's NT-Xent) for the from-scratch image encoders.
- :mod:`omnifuse.pretrain.run`: the run directory, progress, checkpoints and resume.
- :mod:`omnifuse.pretrain.checkpoint`: the encoder checkpoint a model starts from (``model.<kind>.init``).

This package's ``__init__`` imports nothing: the model builder reads checkpoints without pulling in the rest.
"""
