"""BM25 sparse vectors from Qdrant Edge's built-in ``Bm25`` model (Rust tokenizer + stemmer, no download).

The vectors carry term-frequency weights only; IDF is applied at query time by the store (the ``bm25``
sparse vector is configured with the IDF modifier on both the embedded shard and a Qdrant server),
so documents never need re-encoding when the corpus changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import qdrant_edge

from engine.types import SparseVector

# Measured: a 200-token (cl100k) chunk of English prose is ~86 BM25 tokens after stop-word removal.
# BM25's length normalisation compares each chunk to this average, so it should match our chunk size.
DEFAULT_AVG_LEN = 90.0


class Bm25SparseEncoder:
    """English BM25 term-frequency vectors (k=1.2, b=0.75), stemmed and stop-word filtered.

    Args:
        avg_len: Expected average chunk length in BM25 tokens (about 0.43 x the chunk size in cl100k tokens).
        k: Term-frequency saturation.
        b: Length normalisation strength in [0, 1].
    """

    def __init__(self, *, avg_len: float = DEFAULT_AVG_LEN, k: float = 1.2, b: float = 0.75) -> None:
        self._model = qdrant_edge.Bm25(qdrant_edge.Bm25Config(k=k, b=b, avg_len=avg_len, language="english"))

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """Encode chunk texts as documents (saturated, length-normalised term frequencies).

        Args:
            texts: Chunk texts.

        Returns:
            One sparse vector per text; a text with no indexable terms gives an empty vector.
        """
        return [_to_sparse(self._model.embed_document(text)) for text in texts]

    def encode_query(self, text: str) -> SparseVector:
        """Encode a search query: every distinct term gets weight 1.0 (IDF does the ranking).

        Args:
            text: The user's query.

        Returns:
            The query's sparse vector (empty when it contains only stop words).
        """
        return _to_sparse(self._model.embed_query(text))


def _to_sparse(vector: qdrant_edge.SparseVector) -> SparseVector:
    return SparseVector(indices=list(vector.indices), values=[float(v) for v in vector.values])
