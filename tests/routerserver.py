"""Run the real router (its uvicorn server, edge and app) on a loopback port in a thread."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

from llm_api_router.config import RouterConfig
from llm_api_router.serve import RouterServer as _Server
from llm_api_router.serve import ServeConfig
from llm_api_router.server import RouterApp, create_app


class RouterServer:
    """The router on ``http://127.0.0.1:<port>``; a context manager that stops it."""

    def __init__(
        self, config: RouterConfig | dict[str, Any], *, config_path: str | None = None
    ) -> None:
        if not isinstance(config, RouterConfig):
            config = RouterConfig.from_dict(config)
        self.config = config
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app: RouterApp = create_app(config)
        uv_config = ServeConfig(
            self.app,
            settings=config.settings,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
        self.server = self._server = _Server(uv_config, config_path=config_path)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the router did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
