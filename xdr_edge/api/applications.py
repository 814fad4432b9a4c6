"""Administering integrators' applications (``xdr-edge api add-application`` and friends).

An application's id is chosen by the operator (lower-case letters, digits and hyphens, at most 32: it becomes
the first half of the practice ids its accounts get); its password is generated here, 40 random characters,
returned once to be handed to the integrator, and stored only as a slow salted hash. A lost password is
replaced, never recovered. Every change is audited with the operator as the actor.
"""

from __future__ import annotations

__all__ = ["add_application", "reset_application_password", "set_application_active"]

import re
from datetime import UTC, datetime

from xdr_edge.api.passwords import PasswordHasher, new_secret
from xdr_edge.api.schema import APPLICATION_ID_PATTERN
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.registry.accounts import AccountStore, ApplicationRecord
from xdr_edge.registry.records import AuditEvent


def add_application(
    store: AccountStore, application_id: str, name: str, *, actor: str, hasher: PasswordHasher | None = None
) -> str:
    """Create the application; returns its generated password (the only time it is ever shown)."""
    if not re.match(APPLICATION_ID_PATTERN, application_id):
        raise ConfigurationError(
            f"application id {application_id!r} is not usable: 1-32 lower-case letters, digits and hyphens, "
            "starting with a letter or digit",
            location="application id",
        )
    password = new_secret()
    now = datetime.now(UTC)
    record = ApplicationRecord(
        id=application_id,
        name=name.strip() or application_id,
        password_hash=(hasher or PasswordHasher()).hash(password),
        active=True,
        created_at=now,
        password_changed_at=now,
    )
    store.add_application(
        record, AuditEvent(now, actor, "application.add", application_id, {"name": record.name})
    )
    return password


def reset_application_password(
    store: AccountStore, application_id: str, *, actor: str, hasher: PasswordHasher | None = None
) -> str:
    """Replace the application's password with a new generated one (returned once); the old one stops working."""
    password = new_secret()
    now = datetime.now(UTC)
    event = AuditEvent(now, actor, "application.password-reset", application_id, {})
    if not store.set_application_password(
        application_id, (hasher or PasswordHasher()).hash(password), now, event
    ):
        raise ConfigurationError(f"no application {application_id!r}", location=application_id)
    return password


def set_application_active(store: AccountStore, application_id: str, active: bool, *, actor: str) -> bool:
    """Enable or disable an application (a disabled one is answered like a wrong password); True if changed."""
    if store.application(application_id) is None:
        raise ConfigurationError(f"no application {application_id!r}", location=application_id)
    action = "application.enable" if active else "application.disable"
    event = AuditEvent(datetime.now(UTC), actor, action, application_id, {"active": active})
    return store.set_application_active(application_id, active, event)
