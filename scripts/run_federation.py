"""Starts two MedChat homeservers that federate on this machine, in the foreground (Ctrl-C stops).

hospital-a.test on 127.0.0.1 and hospital-b.test on 127.0.0.2, federation over TLS on port 8448
of each address from a throw-away CA made under the data directory; each allows only the other.
The server names (`hospital-a.test:8448`) resolve inside each Synapse process
(medchat_dev.devhosts), so nothing on the system changes. See tests/federation.py.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from federation import FederatedServer, ThrowawayCA, peer, start_all  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=ROOT / "data" / "federation", help="keys, databases, CA (kept between runs)"
    )
    parser.add_argument(
        "--federation-port",
        type=int,
        default=8448,
        help="TLS federation port on each address (part of the server names)",
    )
    args = parser.parse_args()

    a = peer("hospital-a.test", "127.0.0.1", args.federation_port)
    b = peer("hospital-b.test", "127.0.0.2", args.federation_port)
    ca = ThrowawayCA(args.data_dir / "ca")
    servers = [
        FederatedServer(args.data_dir / "a", a, [a, b], ca, allow=[b.server_name]),
        FederatedServer(args.data_dir / "b", b, [a, b], ca, allow=[a.server_name]),
    ]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        start_all(servers)
        for server in servers:
            print(
                f"{server.server_name}: client API {server.base_url}  federation https://{server.peer.address}:{server.peer.federation_port}  log {server.log_path}"
            )
        print(f"CA certificate: {ca.cert_path}\nCtrl-C stops both.", flush=True)
        while all(s.process is not None and s.process.poll() is None for s in servers):
            time.sleep(1)
        print("a server exited; see its log", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
