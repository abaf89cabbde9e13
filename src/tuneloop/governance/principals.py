"""Principals (people and services) and their API keys. Keys are stored only as SHA-256 hashes.

Identity comes from keys, never from the environment. Without a key, the CLI acts as the *local
principal*: one bound to the operating-system account id (`os.getuid()`, which no environment
variable changes), named `ACCOUNT@uidN`. The local principal administers a project it created on a
local SQLite store (whose file only that account can open) and never holds the privacy role;
everything a privacy officer does takes their own key.

On a shared PostgreSQL store (team mode) an OS account proves nothing, since every machine has
one: the local principal is a developer there, and administration takes an admin's key. The first
admin is bootstrapped once, on a store where no admin key exists yet (`bootstrap_admin`, which
`tuneloop init` runs), and its key is printed once and stored only as a hash.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from tuneloop.errors import NotFound, PermissionDenied, TuneloopError
from tuneloop.governance import audit
from tuneloop.governance.tiers import AUDIENCES, ROLES, Actor
from tuneloop.store import ApiKey, Principal, Store, utcnow

KEY_PREFIX = "tl_"
API_KEY_ENV = "TUNELOOP_API_KEY"


LOCAL_KIND = "local"


def actor_of(principal: Principal) -> Actor:
    return Actor(
        id=principal.id, name=principal.name, role=principal.role, audience=principal.audience,
        local=principal.kind == LOCAL_KIND,
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
        return _issue_key(session, by.name, name, role=role, audience=audience, label=label,
                          kind=kind, action="key.create")


def _issue_key(session: Session, by: str, name: str, *, role: str, audience: str, label: str,
               kind: str, action: str) -> NewKey:
    """Make a key for principal `name` (made if new) in the caller's transaction; audited."""
    principal = ensure_principal(session, name, role=role, audience=audience, kind=kind)
    if principal.kind == LOCAL_KIND:
        raise TuneloopError(f"{name!r} is an operating-system account's local principal; "
                            "it acts without a key, choose another name")
    if principal.disabled_at is not None:
        raise PermissionDenied(f"principal {name!r} is disabled; it gets no new keys")
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
        actor=by,
        action=action,
        target=f"principal:{name}",
        details={"prefix": prefix, "role": role, "audience": audience},
    )
    return NewKey(secret=secret, prefix=prefix, principal=actor_of(principal))


def keyless_admin(store: Store) -> bool:
    """Whether the OS account that created the project may administer it without a key: on a
    local SQLite store only (see the module docstring)."""
    return store.dialect == "sqlite"


def admin_key_exists(session: Session) -> bool:
    """Whether any admin principal holds, or ever held, a key (a revoked one counts)."""
    return session.execute(
        select(ApiKey.id).join(Principal, Principal.id == ApiKey.principal_id)
        .where(Principal.role == "admin").limit(1)
    ).first() is not None


def bootstrap_admin(store: Store, name: str, *, label: str = "first admin") -> NewKey:
    """Make the first admin of a shared (PostgreSQL) store, with a key shown once.

    Refused once any admin key exists: later admins are made by an admin's key. Audited as
    `key.bootstrap`, by the local principal of the account that ran it. On SQLite the account
    that created the project administers it without a key, so there is nothing to bootstrap.
    """
    if keyless_admin(store):
        raise PermissionDenied(
            "a local SQLite project is administered by the account that created it; there is "
            "no first admin to bootstrap",
            hint=f"make an admin key with `tuneloop keys create {name} --role admin`")
    with store.session() as session:
        # One bootstrap at a time: a second one waits here, then sees the first one's key.
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext('tuneloop.bootstrap'))"))
        if admin_key_exists(session):
            raise PermissionDenied(
                "an admin key exists already; the first admin is bootstrapped only once",
                hint="ask an admin: `tuneloop keys create NAME --role admin` with their key")
        by = local_principal(session).name
        return _issue_key(session, by, name, role="admin", audience="internal", label=label,
                          kind="person", action="key.bootstrap")


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


def disable_principal(store: Store, by: Actor, name: str, reason: str = "") -> None:
    """Disable a principal (admins only): none of its keys work any more, at once."""
    if by.role != "admin":
        raise PermissionDenied(f"only an admin disables principals; {by.name} has role {by.role!r}")
    with store.session() as session:
        principal = session.execute(
            select(Principal).where(Principal.name == name)
        ).scalar_one_or_none()
        if principal is None:
            raise NotFound(f"no principal named {name!r}", hint="`tuneloop keys list`")
        if principal.id == by.id:
            raise TuneloopError("an admin does not disable themselves; ask another admin")
        if principal.disabled_at is None:
            principal.disabled_at = utcnow()
            audit.record(session, actor=by.name, action="principal.disable",
                         target=f"principal:{name}", details={"reason": reason})


def local_account() -> tuple[int, str]:
    """The operating-system account running this process: its id and its name in the user
    database (both from the kernel and /etc/passwd, never from LOGNAME or USER)."""
    uid = os.getuid()
    try:
        return uid, pwd.getpwuid(uid).pw_name
    except KeyError:
        return uid, "user"


def local_name() -> str:
    """The local principal's name: `ACCOUNT@uidN`."""
    uid, account = local_account()
    return f"{account}@uid{uid}"


def local_principal(session: Session, *, role: str = "developer") -> Principal:
    """The local principal of this OS account, created with `role` if it does not exist yet.

    A principal of that name that is not a local one (made with a key) is refused: the name is
    taken, and acting as it takes its key.
    """
    name = local_name()
    principal = session.execute(
        select(Principal).where(Principal.name == name)
    ).scalar_one_or_none()
    if principal is None:
        principal = Principal(name=name, role=role, audience="internal", kind=LOCAL_KIND)
        session.add(principal)
        session.flush()
    elif principal.kind != LOCAL_KIND:
        raise PermissionDenied(f"principal {name!r} is not this account's local principal",
                               hint="act with your API key (--key or TUNELOOP_API_KEY)")
    return principal


def local_actor(store: Store) -> Actor:
    """The local principal as an Actor; never the privacy role, an admin only on a local SQLite
    store (`keyless_admin`), refused once disabled."""
    with store.session() as session:
        principal = local_principal(session)
        if principal.disabled_at is not None:
            raise PermissionDenied(f"the local principal {principal.name} has been disabled",
                                   hint="act with your API key (--key or TUNELOOP_API_KEY)")
        actor = actor_of(principal)
    if actor.role == "privacy" or (actor.role == "admin" and not keyless_admin(store)):
        # The privacy role is proven by a key only, whatever the table says; so is the admin
        # role on a shared store.
        actor = Actor(actor.id, actor.name, "developer", actor.audience, local=True)
    return actor


def current_actor(store: Store, key: str | None = None) -> Actor:
    """Who runs this CLI command: the key given (or in TUNELOOP_API_KEY), else the local
    principal of the operating-system account (see the module docstring)."""
    key = key or os.environ.get(API_KEY_ENV)
    if key:
        return authenticate(store, key)
    return local_actor(store)
