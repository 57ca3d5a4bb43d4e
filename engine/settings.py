"""One ``Settings`` object, read from environment variables (documented in README's configuration table)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Runtime configuration. ``Settings.from_env()`` is the only constructor the app uses."""

    data_dir: Path = Path("data")
    database_url: str = ""  # empty: SQLite file under data_dir
    qdrant_url: str = ""  # empty: embedded qdrant-edge shard under data_dir
    qdrant_api_key: str = ""
    qdrant_collection: str = "ragline_chunks"
    # int8 ONNX: SciFact nDCG@10 0.6455 vs 0.6451 fp32, ~1.4x less CPU per chunk, ~4x faster queries
    embedder: str = "minilm-onnx-int8"  # or "minilm" (torch fp32), a name from `embedders`, or a model spec
    # further embedders by name ("name=sentence-transformers:/dir" or "name=onnx:/dir"), which knowledge bases may
    # choose (engine.embedders.EmbedderCatalog); API users pick names, only the operator names paths
    embedders: tuple[str, ...] = ()
    model_cache_dir: Path = Path.home() / ".cache" / "ragline"  # the one-time ONNX export, shared by data dirs
    torch_threads: int = 0  # 0: min(cpu_count, 4); embedding threads for ingest (and for queries with torch)
    query_threads: int = 0  # threads of a query embedded alone (0: min(2, cores)); queries beside others use one
    host: str = "127.0.0.1"
    port: int = 8000
    chunk_tokens: int = 200
    chunk_overlap: int = 40
    max_chunks_per_file: int = 20_000
    max_upload_bytes: int = 100 * 1024 * 1024
    parse_timeout_s: float = 60.0
    parse_memory_mb: int = 1536
    ingest_workers: int = 1
    ingest_max_attempts: int = 3
    search_max_top_k: int = 100
    # memory for the chunks searches return, kept until the next write (embedded store; 0: none): ~16k chunks of
    # ~730 characters in 32 MB, SciFact's whole corpus (engine.stores.edge_chunks)
    search_cache_mb: int = 32
    # BM25 IDF per workspace keeps tenants' term statistics apart. The embedded store serves it from shard-wide
    # statistics while one workspace is alone there; with a second tenant, "global" is ~25x faster at 100k chunks.
    bm25_idf_scope: str = "workspace"
    reranker: str = ""  # off; "cross-encoder:/local/model/path" or "package.module:factory"
    default_model: str = "ragline/extractive"
    model_api_base: str = ""  # provider base URL for agents' models (never taken from a request)
    model_api_key: str = ""  # provider key; write-only, never in responses or logs
    max_runs_per_workspace: int = 8
    sse_ping_interval_s: float = 15.0
    rate_limit_per_minute: int = 600
    cors_origins: tuple[str, ...] = ()
    # seals variables and model credentials at rest (comma-separated base64 keys, the first seals; empty: a key
    # generated into <data dir>/secret.key with 0600 permissions on first start)
    secret_key: str = ""
    # networks a workspace's model configuration may point its api_base into despite the SSRF guard
    model_allow_networks: tuple[str, ...] = ()
    log_level: str = "INFO"
    access_log: bool = True  # ``ragline serve``: one line per request (uvicorn's, with the request id)
    bootstrap_token: str = ""  # fixes the first admin token (automated deployments); printed otherwise
    # outbound run callbacks: networks exempt from the SSRF guard (operator opt-in, e.g. "127.0.0.1/32")
    callback_allow_networks: tuple[str, ...] = ()
    callback_max_attempts: int = 6
    callback_retry_base_s: float = 5.0  # backoff: base, 2x base, 4x base ... (capped at an hour), +-10 % jitter
    webhook_rate_per_minute: int = 60  # inbound webhook deliveries per trigger path
    login_token_ttl_s: float = 12 * 3600.0  # lifetime of the API token POST /api/v1/login issues
    login_rate_per_user_per_minute: int = 10  # login attempts per username (429 beyond)
    login_rate_per_address_per_minute: int = 30  # login attempts per client address (429 beyond)
    # metadata database waits: a request that cannot get its lock, a pooled connection or a server connection
    # within these answers 503 (Retry-After) instead of hanging; see engine.db.session.create_engine
    db_busy_timeout_s: float = 2.0  # SQLite busy timeout: how long a statement waits for another writer's lock
    db_pool_timeout_s: float = 5.0  # how long a request waits for a free pooled connection
    db_connect_timeout_s: float = 5.0  # how long opening a connection to a database server may take
    token_mint_per_minute: int = 10  # new token secrets (create, regenerate) per acting user (429 beyond)
    token_mint_per_day: int = 100  # the same, per day
    # networks a workspace's MCP server URLs may point into despite the SSRF guard (e.g. "127.0.0.1/32")
    mcp_allow_networks: tuple[str, ...] = ()
    # workspace events: automation hops before a chain is stopped (automation.loop_stopped), the live feed's
    # per-client queue (a client this far behind is dropped, 1013) and how often live clients' tokens are rechecked
    automation_max_depth: int = 5
    live_queue_size: int = 1000
    live_recheck_s: float = 10.0

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'ragline.db').resolve()}"

    @property
    def resolved_torch_threads(self) -> int:
        return self.torch_threads or max(1, min(os.cpu_count() or 1, 4))

    @property
    def resolved_query_threads(self) -> int:
        return self.query_threads or max(1, min(os.cpu_count() or 1, 2))

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``RAGLINE_*`` variables (plus ``DATABASE_URL`` and ``QDRANT_URL``)."""
        env = os.environ if env is None else env
        raw: dict[str, Any] = {}
        for field in msgspec.structs.fields(cls):
            name = field.name
            key = (
                name.upper() if name in ("database_url", "qdrant_url", "qdrant_api_key") else f"RAGLINE_{name.upper()}"
            )
            if key in env and env[key] != "":
                raw[name] = env[key].split(",") if name in _LISTS else env[key]
        raw.update(overrides)
        try:
            return msgspec.convert(raw, cls, strict=False, dec_hook=_decode)
        except msgspec.ValidationError as exc:
            raise ValueError(f"invalid configuration: {exc}") from exc


_LISTS = ("cors_origins", "callback_allow_networks", "model_allow_networks", "mcp_allow_networks", "embedders")


def _decode(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, (str, Path)):
        return Path(value)
    raise NotImplementedError(f"cannot read {kind} from the environment")
