"""Ragline engine: ports, adapters, retrieval and the agent runtime. Never imports an HTTP framework."""

from engine._process_env import configure_process_env

configure_process_env()
