"""Signs a federation allow-list file for the module's `federation_allow_list_file`.

The key file has Synapse's signing-key format (`ed25519 <key id> <seed>`), so a federation
authority can keep it like a server key; the module is configured with its public key only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from signedjson.key import generate_signing_key, read_signing_keys, write_signing_keys

from medchat.federation.allowlist import public_key_of, sign_allow_list


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument(
        "--new-key",
        type=Path,
        metavar="KEY_FILE",
        help="write a new ed25519 key (refuses to overwrite) and print its public key",
    )
    key.add_argument("--key", type=Path, metavar="KEY_FILE", help="the signing key")
    parser.add_argument(
        "--public-key",
        action="store_true",
        help="print the key's public key (for `federation_allow_list_file.public_key`)",
    )
    parser.add_argument("--out", type=Path, help="where to write the signed list (default: standard output)")
    parser.add_argument("servers", nargs="*", help="server names to allow (as in `federation_allow_list`)")
    args = parser.parse_args()

    if args.new_key:
        fd = os.open(args.new_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            write_signing_keys(f, [generate_signing_key("allow_list")])
        args.key = args.new_key
    with args.key.open() as f:
        signing_key = read_signing_keys(f)[0]
    if args.new_key or args.public_key:
        print(f"public_key: {public_key_of(signing_key)}")
    if not args.servers:
        if not (args.new_key or args.public_key):
            parser.error("name at least one server to allow")
        return
    text = json.dumps(sign_allow_list(args.servers, signing_key), indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
