"""Principals (people and services) and their API keys. Keys are stored only as SHA-256 hashes."""

from __future__ import annotations

import getpass
import hashlib
import os
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneloop.errors import NotFound, PermissionDenied, TuneloopError
from tuneloop.governance import audit
from tuneloop.governance.tiers import AUDIENCES, ROLES, Actor
from tuneloop.store import ApiKey, Principal, Store, utcnow

KEY_PREFIX = "tl_"
API_KEY_ENV = "TUNELOOP_API_KEY"


def actor_of(principal: Principal) -> Actor:
    return Actor(
        id=principal.id, name=principal.name, role=principal.role, audience=principal.audience
    )


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _check(role: str, audience: str) -> None:
    if role not in ROLES:
        raise TuneloopError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    if audience not in AUDIENCES:
        raise TuneloopError(f"unknown audience {audience!r}; audiences are {', '.join(AUDIENCES)}")


def ensure_principal(
    session: Session,
    name: str,
    *,
    role: str = "developer",
    audience: str = "internal",
    kind: str = "person",
) -> Principal:
    """The principal with this name, created with this role and audience if it does not exist."""
    _check(role, audience)
    principal = session.execute(
        select(Principal).where(Principal.name == name)
    ).scalar_one_or_none()
    if principal is None:
        principal = Principal(name=name, role=role, audience=audience, kind=kind)
        session.add(principal)
        session.flush()
    return principal


@dataclass(frozen=True)
class NewKey:
    """A freshly created key: `secret` is shown once and never stored."""

    secret: str
    prefix: str
    principal: Actor


def create_key(
    store: Store,
    by: Actor,
    name: str,
    *,
    role: str = "developer",
    audience: str = "internal",
    label: str = "",
    kind: str = "person",
) -> NewKey:
    """Create a key for principal `name` (creating the principal); only admins may."""
    if by.role != "admin":
        raise PermissionDenied(f"only an admin creates API keys; {by.name} has role {by.role!r}")
    _check(role, audience)
    with store.session() as session:
        principal = ensure_principal(session, name, role=role, audience=audience, kind=kind)
        if (principal.role, principal.audience) != (role, audience):
            raise TuneloopError(
                f"principal {name!r} exists with role {principal.role!r} and audience "
                f"{principal.audience!r}; a key inherits them (asked for {role!r}/{audience!r})"
            )
        prefix = KEY_PREFIX + secrets.token_hex(4)
        secret = f"{prefix}_{secrets.token_urlsafe(32)}"
        session.add(
            ApiKey(principal_id=principal.id, prefix=prefix, key_hash=hash_key(secret), label=label)
        )
        audit.record(
            session,
            actor=by.name,
            action="key.create",
            target=f"principal:{name}",
            details={"prefix": prefix, "role": role, "audience": audience},
        )
        return NewKey(secret=secret, prefix=prefix, principal=actor_of(principal))


def authenticate(store: Store, key: str) -> Actor:
    """The principal a bearer key belongs to; `PermissionDenied` for unknown or revoked keys."""
    if not key.startswith(KEY_PREFIX):
        raise PermissionDenied("invalid API key")
    with store.session(write=False) as session:
        row = session.execute(
            select(ApiKey, Principal)
            .join(Principal, Principal.id == ApiKey.principal_id)
            .where(ApiKey.key_hash == hash_key(key))
        ).first()
        if row is None:
            raise PermissionDenied("invalid API key")
        api_key, principal = row
        if api_key.revoked_at is not None or principal.disabled_at is not None:
            raise PermissionDenied(f"API key {api_key.prefix} has been revoked")
        return actor_of(principal)


def revoke_key(store: Store, by: Actor, prefix: str) -> None:
    """Revoke a key by its prefix; admins may revoke any key, others only their own."""
    with store.session() as session:
        row = session.execute(select(ApiKey).where(ApiKey.prefix == prefix)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no API key with prefix {prefix!r}", hint="`tuneloop keys list`")
        if by.role != "admin" and row.principal_id != by.id:
            raise PermissionDenied("only an admin revokes another principal's key")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            audit.record(session, actor=by.name, action="key.revoke", target=f"key:{prefix}")


def list_keys(store: Store) -> list[tuple[ApiKey, Principal]]:
    with store.session(write=False) as session:
        rows = session.execute(
            select(ApiKey, Principal)
            .join(Principal, Principal.id == ApiKey.principal_id)
            .order_by(ApiKey.id)
        ).all()
        return [(k, p) for k, p in rows]


def get_actor(store: Store, name: str) -> Actor:
    with store.session(write=False) as session:
        principal = session.execute(
            select(Principal).where(Principal.name == name)
        ).scalar_one_or_none()
        if principal is None:
            raise NotFound(f"no principal named {name!r}", hint="`tuneloop keys list`")
        return actor_of(principal)


def local_user() -> str:
    """The operating-system user running the CLI."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "local")


def current_actor(store: Store, key: str | None = None) -> Actor:
    """Who runs this CLI command: the key given (or in TUNELOOP_API_KEY), else the local user.

    The local user is the project's admin when they created it, a developer otherwise; acting as
    anyone else (the privacy officer, say) takes that person's key.
    """
    key = key or os.environ.get(API_KEY_ENV)
    if key:
        return authenticate(store, key)
    with store.session() as session:
        return actor_of(ensure_principal(session, local_user()))
