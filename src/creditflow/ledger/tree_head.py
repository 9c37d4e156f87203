"""Signed tree heads (STH): the platform's signed statement "the log has N entries and this root".

Anyone who keeps an STH can later demand a consistency proof to the current one, so the platform
cannot rewrite history it has already signed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from creditflow.kernel.encoding import encode
from creditflow.ledger.signing import STH_CONTEXT, Signer, verify_signature

STH_VERSION = 1
_HEX_RE = re.compile(r"^[0-9a-f]*$")


@dataclass(frozen=True, slots=True)
class TreeHead:
    tree_size: int
    root_hash: bytes
    ts_ms: int
    key_id: str
    signature: bytes = b""

    def body(self) -> dict[str, Any]:
        return {
            "v": STH_VERSION,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "ts_ms": self.ts_ms,
            "key_id": self.key_id,
        }

    def message(self) -> bytes:
        return STH_CONTEXT + encode(self.body())

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, data: Any) -> TreeHead:
        if not isinstance(data, Mapping):
            raise ValueError("tree head must be an object")
        try:
            size, root, ts, key_id, sig = (
                data["tree_size"],
                data["root_hash"],
                data["ts_ms"],
                data["key_id"],
                data["signature"],
            )
        except KeyError as exc:
            raise ValueError(f"tree head lacks {exc.args[0]}") from exc
        if data.get("v") != STH_VERSION:
            raise ValueError("unsupported tree head version")
        if not (isinstance(size, int) and isinstance(ts, int) and size >= 0):
            raise ValueError("tree_size and ts_ms must be integers")
        for name, value in (("root_hash", root), ("signature", sig)):
            if not isinstance(value, str) or not _HEX_RE.fullmatch(value) or len(value) % 2:
                raise ValueError(f"{name} must be lower-case hex")
        if not isinstance(key_id, str):
            raise ValueError("key_id must be a string")
        return cls(
            tree_size=size,
            root_hash=bytes.fromhex(root),
            ts_ms=ts,
            key_id=key_id,
            signature=bytes.fromhex(sig),
        )

    def verify(self, log_keys: Mapping[str, bytes]) -> bool:
        public = log_keys.get(self.key_id)
        return (
            public is not None
            and len(self.root_hash) == 32
            and verify_signature(public, self.message(), self.signature)
        )


def sign_tree_head(signer: Signer, tree_size: int, root_hash: bytes, ts_ms: int) -> TreeHead:
    unsigned = TreeHead(tree_size=tree_size, root_hash=root_hash, ts_ms=ts_ms, key_id=signer.key_id)
    return TreeHead(tree_size, root_hash, ts_ms, signer.key_id, signer.sign(unsigned.message()))
