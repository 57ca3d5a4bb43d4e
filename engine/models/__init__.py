"""Model adapters (the built-in extractive model, litellm for every provider) and the router over them."""

from __future__ import annotations

from engine.models.extractive import MODEL as EXTRACTIVE_MODEL
from engine.models.extractive import ExtractiveModelClient
from engine.models.litellm_client import LiteLLMModelClient, cost_usd
from engine.models.provider import ModelRouter
from engine.settings import Settings


def create_model_provider(settings: Settings) -> ModelRouter:
    """Built-in models natively; any other litellm model name with the server's credentials."""
    return ModelRouter(
        builtin={EXTRACTIVE_MODEL: ExtractiveModelClient()},
        provider_client=lambda endpoint: LiteLLMModelClient.for_endpoint(endpoint) if endpoint is not None
        else LiteLLMModelClient(api_base=settings.model_api_base or None, api_key=settings.model_api_key or None),
        default_model=settings.default_model,
    )


__all__ = ["EXTRACTIVE_MODEL", "cost_usd", "create_model_provider"]
