"""A weighted router for canary rollouts outside Kubernetes: `weight` percent of the requests go
to the canary instance, the rest to the stable one.

    python canary_deployment/router.py --stable http://127.0.0.1:8001 \
        --canary http://127.0.0.1:8002 [--host 127.0.0.1] [--port 8080] [--weight 0]

    GET /-/canary-weight   {"weight": 25, "served": {"stable": 912, "canary": 301}}
    PUT /-/canary-weight   body {"weight": 25}: what `canary.py --router URL` sends at each step

Every other request is forwarded as it came (method, path, query, headers, body) to the instance
the draw picked, and answered with that instance's response plus an `X-Canary-Track:
stable|canary` header. An instance that does not answer gives 502. The weight lives in memory
and in --state (a restarted router keeps it unless --weight is given). The admin route listens
wherever the router does: keep --host on a private interface. On Kubernetes the ingress-nginx
canary annotation does this job (canary-ingress.yaml, `canary.py --ingress`).
"""

from __future__ import annotations

import argparse
import json
import random
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "host", "content-length"}


class Router:
    def __init__(self, stable: str, canary: str, weight: int | None = None,
                 state: Path | None = None) -> None:
        self.upstream = {"stable": stable.rstrip("/"), "canary": canary.rstrip("/")}
        self.state = state
        self.weight = 0
        self.set_weight(weight if weight is not None else (self._load() or 0))
        self.served = {"stable": 0, "canary": 0}
        self.client: httpx.AsyncClient | None = None

    def _load(self) -> int | None:
        try:
            return int(json.loads(self.state.read_text(encoding="utf-8"))["weight"]) \
                if self.state else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def set_weight(self, weight: int) -> None:
        self.weight = weight
        if self.state:
            tmp = self.state.with_name(f".{self.state.name}.tmp")
            tmp.write_text(json.dumps({"weight": weight}), encoding="utf-8")
            tmp.replace(self.state)

    def pick(self) -> str:
        return "canary" if random.random() * 100 < self.weight else "stable"  # nosec B311

    async def weight_route(self, request: Request) -> Response:
        if request.method == "PUT":
            try:
                body: Any = await request.json()
                weight = int(body["weight"])
            except (ValueError, KeyError, TypeError):
                return JSONResponse({"error": 'expected {"weight": 0..100}'}, status_code=422)
            if not 0 <= weight <= 100:
                return JSONResponse({"error": "weight must be 0..100"}, status_code=422)
            self.set_weight(weight)
        return JSONResponse({"weight": self.weight, "served": self.served,
                             "upstream": self.upstream})

    async def forward(self, request: Request) -> Response:
        assert self.client is not None
        track = self.pick()
        url = self.upstream[track] + request.url.path
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            resp = await self.client.request(request.method, url, params=request.query_params,
                                             headers=headers, content=await request.body())
        except httpx.HTTPError as e:
            return JSONResponse({"error": f"{track} instance unreachable: {type(e).__name__}"},
                                status_code=502, headers={"X-Canary-Track": track})
        self.served[track] += 1
        out = {k: v for k, v in resp.headers.items()
               if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding"}
        out["X-Canary-Track"] = track
        return Response(resp.content, status_code=resp.status_code, headers=out)


def create_app(router: Router) -> Starlette:
    @asynccontextmanager
    async def lifespan(_: Starlette):  # type: ignore[no-untyped-def]
        async with httpx.AsyncClient(timeout=30) as client:
            router.client = client
            yield

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(routes=[
        Route("/-/canary-weight", router.weight_route, methods=["GET", "PUT"]),
        Route("/{path:path}", router.forward, methods=methods),
    ], lifespan=lifespan)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="weighted stable/canary router")
    ap.add_argument("--stable", required=True, help="base URL of the stable instance")
    ap.add_argument("--canary", required=True, help="base URL of the canary instance")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--weight", type=int, help="initial canary percent (default: the saved "
                    "weight, else 0)")
    ap.add_argument("--state", default=str(Path(__file__).with_name(".router-weight.json")))
    args = ap.parse_args(argv)
    import uvicorn

    router = Router(args.stable, args.canary, args.weight, Path(args.state))
    uvicorn.run(create_app(router), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
