"""torchrun for a single-node run, its stores listening on the loopback interface only.

torchrun's agent hosts TCP stores (the rendezvous and the workers' store) that
bind every interface: anyone on the network could reach a run that only ever
talks to itself. For one node, every store server here is handed a socket
already bound to 127.0.0.1 (TCPStore's ``master_listen_fd``); clients connect
as before. Multi-node runs keep torchrun as it is, since their nodes must reach
each other.

    python -m engine.launcher.loopback_run TORCHRUN_ARGS...
"""

from __future__ import annotations

import socket
from typing import Any

import torch.distributed as dist
from torch.distributed import run as torchrun
from torch.distributed.elastic.rendezvous import c10d_rendezvous_backend

_TCPStore = dist.TCPStore
_PARAMETERS = ["host_name", "port", "world_size", "is_master"]


def loopback_store(*args: Any, **kwargs: Any) -> Any:
    """A TCPStore whose server, when this process hosts it, listens on 127.0.0.1 alone."""
    named = dict(zip(_PARAMETERS, args, strict=False)) | kwargs
    if named.get("is_master") and named.get("master_listen_fd") is None:
        server = socket.create_server(("127.0.0.1", int(named.get("port") or 0)))
        named["port"] = server.getsockname()[1]
        named["master_listen_fd"] = server.detach()
        named["host_name"] = "127.0.0.1"
    return _TCPStore(**named)


def main() -> None:
    dist.TCPStore = loopback_store  # type: ignore[misc,assignment]  # the agent's stores, by module attribute
    c10d_rendezvous_backend.TCPStore = loopback_store  # type: ignore[misc,assignment]  # imported by name there
    torchrun.main()


if __name__ == "__main__":
    main()
