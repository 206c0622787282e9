"""The multimodal classifier, assembled from parts (one idea per file; import the one you need):

- ``branch.py``: :class:`ModalityBranch`, a modality's encoder behind its presence mask;
- ``heads.py``: the task heads, the masked loss and accuracy, balanced class weights;
- ``ensemble.py``: an ensemble's member configs and :class:`MemberMean`;
- ``builder.py``: :func:`build_model`, inputs -> branches -> fusion -> heads;
- ``compile.py``: :func:`compile_model`, optimizer, learning-rate schedule, losses and metrics.

The names of the outputs and masks are in :mod:`omnifuse.names`; loading a saved model is
:func:`omnifuse.modelio.load_model`.
"""
