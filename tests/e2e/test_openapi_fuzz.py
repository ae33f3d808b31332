"""schemathesis against the live server's own /openapi.json: no 5xx, and every
response matches the documented status codes, content types and schemas."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.support.harness import Pipeline

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


async def test_schemathesis_finds_nothing(pipeline: Pipeline) -> None:
    # Malformed requests on purpose: aiohttp answers them 400 and logs each at
    # ERROR with its traceback (aiohttp/web_protocol.py: handle_error). Nothing else may be logged so.
    pipeline.expect_log(r"^ERROR aiohttp\.server: Error handling request from \S+\n[\s\S]*"
                        r"\naiohttp\.http_exceptions\.BadHttpMessage: 400, message:")
    await pipeline.new_email()  # something real to look at besides 404s
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("schemathesis")), "run", f"{pipeline.base_url}/openapi.json",
        "--checks", CHECKS, "--max-examples", "100", "--seed", "20261125", "--request-timeout", "15",
        "--phases", "examples,coverage,fuzzing",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=280)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert "passed" in text.lower()
