"""Encoders, one sub-package per modality kind (image, text, audio, numbers), one file per encoder.

Each encoder is a Keras layer taking that modality's tensor and returning (B, output_dim); its config dataclass sits
beside it. Each kind's ``__init__`` holds the name -> class table the model builder looks encoders up in.
"""
