"""Private files: the project's state folder (0700), its database (0600), and secrets (0600).

And the audit chain's HMAC key, which lives outside the database so that write access to the
database is not enough to rewrite history: `TUNELOOP_AUDIT_KEY` (the key itself), or
`TUNELOOP_AUDIT_KEY_FILE` (a file holding it), or a 0600 file created on first use: `audit.key`
next to a SQLite database, or one per PostgreSQL database under `~/.config/tuneloop/audit/`.
Every process that appends to or verifies a shared chain (server replicas, workers) must be given
the same key, through the variable or the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from tuneloop.errors import TuneloopError

AUDIT_KEY_ENV = "TUNELOOP_AUDIT_KEY"
AUDIT_KEY_FILE_ENV = "TUNELOOP_AUDIT_KEY_FILE"
KEY_FILE = "audit.key"


def private_dir(path: Path) -> Path:
    """Create `path` if needed and make it readable by its owner only (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    _chmod(path, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty if it does not exist, and make it owner-only (0600), before anything
    writes to it, so its content is never readable by others even for a moment."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    _chmod(path, 0o600)
    return path


def _chmod(path: Path, mode: int) -> None:
    if path.stat().st_uid == os.getuid():  # only the owner may, and only the owner needs to
        os.chmod(path, mode)


def write_secret(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600 from its creation, atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class AuditKey:
    """The chain's HMAC key, and the last event of a chain written before keys existed (those
    older events stay plain SHA-256; the boundary is kept with the key, outside the database)."""

    key: bytes
    plain_until: int = 0


_cache: dict[str, AuditKey] = {}


def audit_key(url: str, head_seq: int | None = None) -> AuditKey:
    """The HMAC key of the chain in the database at `url`, created (0600) on first use.

    `head_seq` is the chain's length when the caller holds the append lock: a chain that already
    has events when its key file is created keeps them as plain SHA-256 up to there.
    """
    if os.environ.get(AUDIT_KEY_ENV):
        return AuditKey(os.environ[AUDIT_KEY_ENV].encode("utf-8"))
    path = _key_path(url)
    cached = _cache.get(str(path))
    if cached is not None:
        return cached
    if not path.exists():
        if head_seq is None:
            raise TuneloopError(f"the audit chain's key {path} is missing",
                                hint=f"restore it, or set {AUDIT_KEY_ENV} to the deployment's key")
        if not path.parent.exists():
            private_dir(path.parent)
        _create_once(path, json.dumps({"key": secrets.token_hex(32),
                                       "plain_sha256_until": head_seq}))
    found = _read(path)
    _cache[str(path)] = found
    return found


def _create_once(path: Path, text: str) -> None:
    """Write `path` (0600) unless it exists; of processes racing to create it, one wins and the
    others read what it wrote, never a half-written file."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def _read(path: Path) -> AuditKey:
    data = json.loads(path.read_text(encoding="utf-8"))
    return AuditKey(bytes.fromhex(data["key"]), int(data.get("plain_sha256_until", 0)))


def _key_path(url: str) -> Path:
    if os.environ.get(AUDIT_KEY_FILE_ENV):
        return Path(os.environ[AUDIT_KEY_FILE_ENV])
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database).resolve().parent / KEY_FILE
    where = f"{parsed.host or 'local'}:{parsed.port or ''}/{parsed.database or ''}"
    name = hashlib.sha256(where.encode()).hexdigest()[:16]
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "tuneloop" / "audit" / f"{name}.key"
