"""Small embedding models the tests make from the bundled all-MiniLM-L6-v2: its first layer only.

``st``: a sentence-transformers directory (1 layer, mean pooling, a Dense 384 -> 128, Normalize): 128 dimensions,
read from its configs. ``plain``: the same without the Dense layer (384 dimensions). ``onnx``: ``plain`` exported
with the engine's recipe (a pooled, normalised ``embedding`` output). ``onnx-tokens``: ``plain`` exported the way
optimum does (``last_hidden_state`` token embeddings, with ``token_type_ids``), for the mean-pooling path.
Built once per test process (a few seconds), into a temporary folder.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "sentence_bert_config.json", "config.json")


@functools.cache
def tiny_models() -> dict[str, Path]:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    from engine.embedders.onnx_export import export_model
    from engine.embedders.sentence_transformer import bundled_model_path

    root = Path(tempfile.mkdtemp(prefix="ragline-tiny-models-"))
    atexit.register(shutil.rmtree, root, True)  # ~220 MB (four copies of the word-piece embeddings)
    model = SentenceTransformer(str(bundled_model_path()), device="cpu")
    bert = model[0].auto_model
    bert.encoder.layer = bert.encoder.layer[:1]
    bert.config.num_hidden_layers = 1
    model.save(str(root / "plain"))
    torch.manual_seed(19)
    dense = Dense(in_features=384, out_features=128)
    SentenceTransformer(modules=[model[0], model[1], dense, Normalize()], device="cpu").save(str(root / "st"))

    onnx_dir = root / "onnx"
    onnx_dir.mkdir()
    export_model(root / "plain", onnx_dir / "model.onnx", int8=False)
    tokens_dir = root / "onnx-tokens"
    tokens_dir.mkdir()

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert  # a submodule: its weights are the graph's initialisers, not traced constants

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> Any:
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    example = torch.ones(2, 8, dtype=torch.long)
    dynamic = {0: "batch", 1: "sequence"}
    with torch.inference_mode():
        torch.onnx.export(
            TokenEmbeddings().eval(), (example, example, torch.zeros_like(example)), str(tokens_dir / "model.onnx"),
            input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "token_type_ids": dynamic,
                          "last_hidden_state": dynamic},
            opset_version=17, dynamo=False,
        )  # fmt: skip
    for folder in (onnx_dir, tokens_dir):
        for name in TOKENIZER_FILES:
            if (root / "plain" / name).is_file():
                shutil.copy(root / "plain" / name, folder / name)
    return {"st": root / "st", "plain": root / "plain", "onnx": onnx_dir, "onnx-tokens": tokens_dir}
