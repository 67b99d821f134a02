"""``uwstego keygen`` and ``uwstego sign``: the key pair and the signature of signed bundles
(docs/bundle.md §3)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from uwstego.bundle import sign_bundle
from uwstego.cli import HelpFormatter
from uwstego.signing import generate_key_pair

log = logging.getLogger(__name__)


def register_keygen(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "keygen", formatter_class=HelpFormatter,
        help="make an Ed25519 key pair for signed bundles",
        description="Write PREFIX.pem (the private key: keep it on the export machine, readable "
                    "by you only) and PREFIX.pub.pem (the public key the vehicle trusts).")
    p.add_argument("prefix", type=Path, help="path of the key files without extension")
    p.set_defaults(func=run_keygen)


def run_keygen(args: argparse.Namespace) -> int:
    private = args.prefix.with_name(args.prefix.name + ".pem")
    public = args.prefix.with_name(args.prefix.name + ".pub.pem")
    key = generate_key_pair(private, public)
    log.info("key %s: private key %s (sign with `uwstego export --sign-key %s` or `uwstego "
             "sign`), public key %s (`--trusted-key`, the node's trusted_keys)", key, private,
             private, public)
    return 0


def register_sign(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sign", formatter_class=HelpFormatter,
                              help="sign an existing bundle (writes BUNDLE/bundle.sig)")
    p.add_argument("bundle", type=Path, help="deploy bundle folder")
    p.add_argument("--key", type=Path, required=True, help="Ed25519 private key (PEM)")
    p.set_defaults(func=run_sign)


def run_sign(args: argparse.Namespace) -> int:
    sign_bundle(args.bundle, args.key)
    return 0
