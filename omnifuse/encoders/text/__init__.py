"""Text encoders (``model.text.encoder``): name -> options, name -> layer (imported on first use)."""

from omnifuse.encoders import lazy_attribute
from omnifuse.encoders.text.bag_config import BagConfig
from omnifuse.encoders.text.minilm_config import MiniLMConfig
from omnifuse.encoders.text.nb_config import NBConfig
from omnifuse.encoders.text.rnn_config import RNNConfig
from omnifuse.encoders.text.tfidf_config import TfidfConfig

CONFIGS = {"rnn": RNNConfig, "bag": BagConfig, "tfidf": TfidfConfig, "nb": NBConfig, "minilm": MiniLMConfig}
LAYERS = {
    "rnn": "rnn.TextRNN",
    "bag": "bag.TextBag",
    "tfidf": "tfidf.TextTfidf",
    "nb": "nb.TextNB",
    "minilm": "minilm.TextMiniLM",
}


def __getattr__(name: str):
    return lazy_attribute(__name__, LAYERS, name)
