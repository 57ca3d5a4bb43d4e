"""``ModelRouter``: the ``ModelProvider`` built at the composition root (openai-agents' ``ModelProvider.get_model``).

Built-in ``ragline/…`` models are native clients; every other name goes to the provider client
(litellm), which is created only when first needed, so the zero-config path never imports litellm.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from engine.errors import InvalidInput
from engine.llm import ModelEndpoint
from engine.ports import ModelClient

BUILTIN_PREFIX = "ragline/"


class ModelRouter:
    """Picks a client by model name.

    Args:
        builtin: Native clients by exact model name (``ragline/extractive``).
        provider_client: Builds the client for every other name: with ``None``, the server's own (built at most
            once); with a model configuration's endpoint, that configuration's (one per configuration version).
        default_model: The model the assistant uses; ``warm_up`` prepares its client.
    """

    def __init__(
        self,
        *,
        builtin: Mapping[str, ModelClient],
        provider_client: Callable[[ModelEndpoint | None], ModelClient],
        default_model: str,
    ) -> None:
        self._builtin = dict(builtin)
        self._make_provider_client = provider_client
        self._clients: dict[tuple[str, str] | None, ModelClient] = {}
        self._default_model = default_model
        self._lock = threading.Lock()

    def get_model(self, name: str, endpoint: ModelEndpoint | None = None) -> ModelClient:
        if name in self._builtin:
            return self._builtin[name]
        if name.startswith(BUILTIN_PREFIX):
            raise InvalidInput(f"unknown built-in model {name!r}; available: {', '.join(sorted(self._builtin))}")
        key = (endpoint.config_id, endpoint.version) if endpoint is not None else None
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                if endpoint is not None:  # an edited configuration replaces its old client
                    self._clients = {k: c for k, c in self._clients.items() if k is None or k[0] != endpoint.config_id}
                client = self._clients[key] = self._make_provider_client(endpoint)
            return client

    def warm_up(self) -> None:
        client = self.get_model(self._default_model)
        warm = getattr(client, "warm_up", None)
        if warm is not None:
            warm()
