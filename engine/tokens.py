"""Token counting with tiktoken, offline (encodings bundled with litellm; see ``_process_env``)."""

from __future__ import annotations

from functools import lru_cache

import tiktoken

DEFAULT_ENCODING = "cl100k_base"


@lru_cache(maxsize=4)
def encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    """Load (once) a tiktoken encoding from the bundled BPE files."""
    return tiktoken.get_encoding(name)


def encoding_for_model(model: str) -> tiktoken.Encoding:
    """The model's encoding when tiktoken knows it, else cl100k_base (a fair estimate for most providers)."""
    bare = model.split("/")[-1]
    try:
        name = tiktoken.encoding_name_for_model(bare)
    except KeyError:
        name = DEFAULT_ENCODING
    if name not in ("cl100k_base", "o200k_base"):
        name = DEFAULT_ENCODING  # only these two ship offline
    return encoding(name)


def count_tokens(text: str, model: str | None = None) -> int:
    enc = encoding_for_model(model) if model else encoding()
    return len(enc.encode(text, disallowed_special=()))
