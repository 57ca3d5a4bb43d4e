"""What a start costs: neither the CLI, the composition root nor the app imports qdrant-client (the embedded default
never needs it), the MCP SDK (runs with MCP servers and ``/mcp`` import it on first use) or litellm (the first run
on a provider's model does): about 2.7 s of every ``ragline`` command and server start otherwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import sys
import api.cli, api.container, api.app
print(sorted(name for name in ("qdrant_client", "mcp", "mcp_types", "litellm") if name in sys.modules))
"""


def test_the_cli_and_the_app_import_no_sdk_they_do_not_use() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
