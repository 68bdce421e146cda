"""`evrt keys DIR`: create CURVE keypairs for the pipeline's --curve-keys option."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("keys", help="create CURVE keys for encrypted, authenticated pipeline sockets",
                       description="Writes DIR/server.key(_secret), DIR/client.key(_secret) and authorises the client "
                                   "in DIR/authorized_clients/. Binding commands use the server keypair, connecting "
                                   "ones the client keypair; give both --curve-keys DIR. Copy other clients' public "
                                   ".key files into authorized_clients/ to admit them.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--force", action="store_true", help="replace existing keys")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..pipeline.sockets import make_keys
    paths = make_keys(args.dir, force=args.force)
    for k, v in paths.items():
        print(f"{k:14s} {v}")
    return 0
