"""Model adapters: the only place that imports litellm (or any vendor SDK)."""
