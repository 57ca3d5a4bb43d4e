"""What a start costs: the CLI and the composition root import neither qdrant-client (the embedded default never
needs it) nor the MCP SDK (only runs with MCP servers do), about 1.8 s of every ``ragline`` command otherwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import sys
import api.cli, api.container
print(sorted(name for name in ("qdrant_client", "mcp", "mcp_types", "litellm") if name in sys.modules))
"""


def test_the_cli_and_the_container_import_no_sdk_they_do_not_use() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
