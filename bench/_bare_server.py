"""The baseline server: one bare uvicorn + Starlette endpoint, run as `fleetwatch serve` runs.

`python -m bench._bare_server PORT` serves `POST /bare`: it reads the request body, parses
it as JSON and answers `{}`. That is the floor of what any Python endpoint on this stack
spends per request (uvicorn with uvloop and httptools, Starlette, the same collector tuning
as `fleetwatch serve`), measured in the same run as the real server for the ratio.
"""

from __future__ import annotations

import sys

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fleetwatch.server import raise_open_file_limit, tune_gc


async def bare(request: Request) -> Response:
    """Read and parse the body; a constant JSON answer."""
    orjson.loads(await request.body())
    return Response(b"{}", media_type="application/json")


def main(argv: list[str]) -> None:
    port = int(argv[0])
    raise_open_file_limit()
    app = Starlette(routes=[Route("/bare", bare, methods=["POST"])])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, timeout_keep_alive=75
    )
    tune_gc()
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main(sys.argv[1:])
