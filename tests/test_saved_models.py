"""A model saved by an earlier omnifuse still loads and answers the same: saved models name registered classes,
layers and outputs, and a reorganisation of the package must not change those names.

tests/fixtures/model_1d2db9e.keras was saved at commit 1d2db9e (before models.py, the encoders and the base
modules were split up) by benchmarks/reference/old_model_fixture.py: image CNN, text RNN + NBSVM, a numbers MLP,
attention fusion, a scaled head and unimodal heads, with some modalities absent."""

from pathlib import Path

import numpy as np

from omnifuse.modelio import load_model

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_model_saved_before_the_reorganisation_loads_and_predicts_the_same():
    saved = np.load(FIXTURES / "model_1d2db9e.npz")
    inputs = {k: saved[k] for k in saved.files if not k.startswith("out_")}
    inputs["text"] = inputs["text"].astype(object)
    model = load_model(FIXTURES / "model_1d2db9e.keras")
    outputs = model.predict(inputs, verbose=0)
    expected = {k.removeprefix("out_"): saved[k] for k in saved.files if k.startswith("out_")}
    assert sorted(outputs) == sorted(expected)
    for name, want in expected.items():
        np.testing.assert_allclose(np.asarray(outputs[name]), want, rtol=1e-5, atol=1e-6, err_msg=name)
    # the absent modalities still weigh exactly nothing
    weights = np.asarray(outputs["modality_weights"])
    assert np.all(weights[inputs["image_mask"] == 0, 0] == 0)
