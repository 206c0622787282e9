"""Serving a trained run: the HTTP API and web page (``app``) and its load benchmark (``bench``).

>>> from omnifuse.serving import create_app
>>> app = create_app("runs/cifar10-imdb")  # then: uvicorn, or `omnifuse serve runs/cifar10-imdb`
"""

from omnifuse.serving.app import create_app

__all__ = ["create_app"]
