"""``ModelRouter``: the ``ModelProvider`` built at the composition root (openai-agents' ``ModelProvider.get_model``).

Built-in ``ragline/…`` models are native clients; every other name goes to the provider client
(litellm), which is created only when first needed, so the zero-config path never imports litellm.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from engine.errors import InvalidInput
from engine.ports import ModelClient

BUILTIN_PREFIX = "ragline/"


class ModelRouter:
    """Picks a client by model name.

    Args:
        builtin: Native clients by exact model name (``ragline/extractive``).
        provider_client: Builds the client for every other name (called at most once).
        default_model: The model the assistant uses; ``warm_up`` prepares its client.
    """

    def __init__(
        self,
        *,
        builtin: Mapping[str, ModelClient],
        provider_client: Callable[[], ModelClient],
        default_model: str,
    ) -> None:
        self._builtin = dict(builtin)
        self._make_provider_client = provider_client
        self._provider_client: ModelClient | None = None
        self._default_model = default_model
        self._lock = threading.Lock()

    def get_model(self, name: str) -> ModelClient:
        if name in self._builtin:
            return self._builtin[name]
        if name.startswith(BUILTIN_PREFIX):
            raise InvalidInput(f"unknown built-in model {name!r}; available: {', '.join(sorted(self._builtin))}")
        with self._lock:
            if self._provider_client is None:
                self._provider_client = self._make_provider_client()
            return self._provider_client

    def warm_up(self) -> None:
        client = self.get_model(self._default_model)
        warm = getattr(client, "warm_up", None)
        if warm is not None:
            warm()
