"""Subprocess for crash tests: upload files, print an ACK line per acknowledged upload, then ingest.

Usage: python -m tests.helpers.ingest_driver DATA_DIR TOKEN SEED COUNT
The parent SIGKILLs this process at a random moment and checks the recovery invariants.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import sys
from pathlib import Path

import engine  # noqa: F401
from api.container import open_services
from engine.settings import Settings
from tests.helpers.pdfs import make_pdf

WORDS = [
    "vacation",
    "policy",
    "expense",
    "travel",
    "receipt",
    "laptop",
    "security",
    "parental",
    "leave",
    "payroll",
    "benefits",
    "office",
    "remote",
    "work",
    "training",
    "budget",
    "contract",
    "invoice",
    "customer",
    "support",
    "incident",
    "review",
]


def make_file(rng: random.Random, n: int) -> tuple[str, bytes]:
    kind = rng.choice(["txt", "md", "pdf"])
    paragraphs = [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 160))) + f" unique{n}"
        for _ in range(rng.randint(2, 12))
    ]
    if kind == "pdf":
        return f"doc{n}.pdf", make_pdf(paragraphs)
    if kind == "md":
        return f"doc{n}.md", "\n\n".join(f"## Section {i}\n\n{p}" for i, p in enumerate(paragraphs)).encode()
    return f"doc{n}.txt", "\n\n".join(paragraphs).encode()


async def main(data_dir: Path, token: str, seed: int, count: int) -> None:
    rng = random.Random(seed)
    settings = Settings.from_env({}, data_dir=data_dir, torch_threads=1, bootstrap_token=token)
    services = await open_services(settings)
    await services.access.bootstrap(secret=token)
    principal = await services.access.authenticate(token)
    kb = await services.knowledge.find_kb_by_name(principal.workspace_id, "crash")
    kb = kb or await services.knowledge.create_kb(principal.workspace_id, "crash")
    await services.worker.recover()
    services.worker.start()
    for n in range(count):
        name, data = make_file(rng, seed * 1000 + n)
        info = await services.knowledge.add_file(principal.workspace_id, kb.id, filename=name, source=io.BytesIO(data))
        originals = data_dir / "originals"
        originals.mkdir(exist_ok=True)
        tmp = originals / f".{info.id}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, originals / info.id)  # the parent's copy, for byte comparison; never half-written
        print(f"ACK {info.id} {info.sha256}", flush=True)
        await asyncio.sleep(rng.random() * 0.3)
    print("UPLOADED", flush=True)
    await services.worker.drain(timeout_s=600)
    print("DRAINED", flush=True)
    await services.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
