"""Text encoders: name -> class (``model.text.encoder``)."""

from omnifuse.encoders.text.bag import BagConfig, TextBag
from omnifuse.encoders.text.nb import NBConfig, TextNB
from omnifuse.encoders.text.rnn import RNNConfig, TextRNN
from omnifuse.encoders.text.tfidf import TextTfidf, TfidfConfig

ENCODERS = {"rnn": TextRNN, "bag": TextBag, "tfidf": TextTfidf, "nb": TextNB}
CONFIGS = {"rnn": RNNConfig, "bag": BagConfig, "tfidf": TfidfConfig, "nb": NBConfig}
