"""A policy of trusted log and witness keys (c2sp.org/tlog-policy), and whether a checkpoint meets it.

Standard library only: the offline verifier reads policies where nothing else is installed.

A policy file is lines of ``log <vkey> [<url>]``, ``witness <name> <vkey> [<url>]``,
``group <name> all|any|<k> <member>...`` and exactly one ``quorum <name>`` (``quorum none``: no
cosignature needed); ``#`` starts a comment line. A group or the quorum may name only witnesses and groups
defined on earlier lines, each member once. A checkpoint meets the policy when one of the logs signed it
and the quorum is witnessed: a witness by its valid cosignature, a group by at least k of its members.

The command-line form (``--log-vkey V --witness W... --quorum N``) is the policy of those keys with a
quorum of "any N of the witnesses" (`Policy.simple`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from creditflow.ledger.note import COSIGNATURE_V1, ED25519, NoteError, VerifierKey, parse_vkey

NONE = "none"
MAX_LOGS = 32
MAX_WITNESSES = 32
MAX_GROUPS = 32


class PolicyError(ValueError):
    """A policy file that does not follow c2sp.org/tlog-policy; the message names the line."""


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    logs: tuple[VerifierKey, ...]
    witnesses: Mapping[str, VerifierKey]  # policy name -> cosigner key
    groups: Mapping[str, Group]
    quorum: str  # a witness's or a group's name, or NONE

    @classmethod
    def simple(cls, logs: Sequence[VerifierKey], witnesses: Sequence[VerifierKey], quorum: int) -> Policy:
        """``quorum`` of ``witnesses`` (0: none), each named by its key name, as the command line gives them."""
        names: dict[str, VerifierKey] = {}
        for key in witnesses:
            if key.sig_type != COSIGNATURE_V1:
                raise PolicyError(f"witness {key.name}: a witness key is a cosignature/v1 (type 0x04) vkey")
            if key.name in names:
                raise PolicyError(f"witness {key.name} is given twice")
            names[key.name] = key
        for key in logs:
            if key.sig_type != ED25519:
                raise PolicyError(f"log {key.name}: a log key is an Ed25519 (type 0x01) vkey")
        if not 0 <= quorum <= len(names):
            raise PolicyError(f"quorum {quorum} needs 0 to {len(names)} (the witnesses given)")
        if quorum == 0:
            return cls(tuple(logs), names, {}, NONE)
        group = Group("witnesses", quorum, tuple(names))
        return cls(tuple(logs), names, {group.name: group}, group.name)

    @property
    def witness_keys(self) -> tuple[VerifierKey, ...]:
        return tuple(self.witnesses.values())

    def needs(self) -> str:
        """The quorum in words, for a refusal: "2 of (w1, w2, w3)", "none", "w1"."""
        return self._words(self.quorum)

    def _words(self, name: str) -> str:
        if name == NONE:
            return "no cosignature"
        group = self.groups.get(name)
        if group is None:
            return name
        return f"{group.threshold} of ({', '.join(self._words(m) for m in group.members)})"

    def met_by(self, cosigned: Iterable[VerifierKey]) -> bool:
        """Whether witnesses whose cosignatures verified (``cosigned``) witness the quorum."""
        good = set(cosigned)
        return self._witnessed(self.quorum, good)

    def _witnessed(self, name: str, good: set[VerifierKey]) -> bool:
        if name == NONE:
            return True
        if name in self.witnesses:
            return self.witnesses[name] in good
        group = self.groups[name]
        return sum(self._witnessed(m, good) for m in group.members) >= group.threshold


def _vkey(text: str, sig_type: int, where: str) -> VerifierKey:
    try:
        key = parse_vkey(text)
    except NoteError as exc:
        raise PolicyError(f"{where}: {exc}") from None
    if key.sig_type != sig_type:
        kind = "an Ed25519 (type 0x01)" if sig_type == ED25519 else "a cosignature/v1 (type 0x04)"
        raise PolicyError(f"{where}: the key must be {kind} vkey")
    return key


def parse_policy(data: str | bytes) -> Policy:
    """Read a c2sp.org/tlog-policy file; `PolicyError` names the first line that is wrong."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="surrogateescape")
    logs: list[VerifierKey] = []
    witnesses: dict[str, VerifierKey] = {}
    groups: dict[str, Group] = {}
    quorum: str | None = None
    for number, raw in enumerate(data.split("\n"), start=1):
        where = f"line {number}"
        if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in raw):
            raise PolicyError(f"{where}: control characters other than tab are not allowed")
        words = raw.replace("\t", " ").split()
        if not words or words[0].startswith("#"):
            continue
        keyword, args = words[0], words[1:]
        if keyword == "log" and len(args) in (1, 2):
            key = _vkey(args[0], ED25519, where)
            if any(k.public_key == key.public_key for k in logs):
                raise PolicyError(f"{where}: this log's key is listed twice")
            logs.append(key)
        elif keyword == "witness" and len(args) in (2, 3):
            name, key = args[0], _vkey(args[1], COSIGNATURE_V1, where)
            if name == NONE or name in witnesses or name in groups:
                raise PolicyError(f"{where}: the name {name!r} is taken")
            if any(k.public_key == key.public_key for k in witnesses.values()):
                raise PolicyError(f"{where}: this witness's key is listed twice")
            witnesses[name] = key
        elif keyword == "group" and len(args) >= 3:
            name, k_text, members = args[0], args[1], tuple(args[2:])
            if name == NONE or name in witnesses or name in groups:
                raise PolicyError(f"{where}: the name {name!r} is taken")
            for member in members:
                if member not in witnesses and member not in groups:
                    raise PolicyError(f"{where}: {member!r} is not a witness or group defined above")
            if len(set(members)) != len(members):
                raise PolicyError(f"{where}: a member is listed twice")
            if k_text == "all":
                k = len(members)
            elif k_text == "any":
                k = 1
            elif k_text.isdigit() and k_text == str(int(k_text)) and 1 <= int(k_text) <= len(members):
                k = int(k_text)
            else:
                raise PolicyError(f"{where}: the threshold must be all, any or 1 to {len(members)}")
            groups[name] = Group(name, k, members)
        elif keyword == "quorum" and len(args) == 1:
            if quorum is not None:
                raise PolicyError(f"{where}: a policy has exactly one quorum line")
            if args[0] != NONE and args[0] not in witnesses and args[0] not in groups:
                raise PolicyError(f"{where}: {args[0]!r} is not a witness or group defined above")
            quorum = args[0]
        else:
            raise PolicyError(f"{where}: expected log, witness, group or quorum with their arguments")
        if len(logs) > MAX_LOGS or len(witnesses) > MAX_WITNESSES or len(groups) > MAX_GROUPS:
            raise PolicyError(f"{where}: more than {MAX_LOGS} logs, witnesses or groups")
    if quorum is None:
        raise PolicyError("the policy has no quorum line (write 'quorum none' to need no cosignature)")
    return Policy(tuple(logs), witnesses, groups, quorum)
