"""The JSON API's rows in the registry database (xdr_edge.registry.accounts) on both engines: the same store
methods, constraints and audit rows on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from xdr_edge.practice import Practice
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.registry import Access, Registry, open_database, open_registry
from xdr_edge.registry.accounts import (
    AccountRecord,
    ApplicationRecord,
    LoginRecord,
    MessageRecord,
    SqlAccountStore,
    open_accounts,
)
from xdr_edge.registry.records import AuditEvent


def _event(action: str, subject: str) -> AuditEvent:
    return AuditEvent(datetime.now(UTC), "test", action, subject, {})


@pytest.fixture
def store(registry_url: str) -> Iterator[SqlAccountStore]:
    with open_registry(registry_url) as registry:
        registry.init(actor="test")
    opened = open_accounts(registry_url)
    yield opened
    opened.close()


def test_applications_accounts_and_logins(store: SqlAccountStore) -> None:
    now = datetime.now(UTC)
    store.add_application(
        ApplicationRecord("mirth", "Mirth prod", "scrypt$x", True, now, now), _event("a", "mirth")
    )
    with pytest.raises(ConfigurationError, match="already exists"):
        store.add_application(ApplicationRecord("mirth", "again", "h", True, now, now), _event("a", "mirth"))
    assert store.set_application_active("mirth", False, _event("d", "mirth"))
    assert not store.set_application_active("mirth", False, _event("d", "mirth"))  # nothing changed
    application = store.application("mirth")
    assert application is not None and not application.active and application.password_hash == "scrypt$x"

    for n in range(3):
        practice = Practice(id=f"p-{n}", name=f"Practice {n}")
        account = AccountRecord("mirth", f"acct-{n}", practice.id, now)
        store.create_account(
            account, practice, _event("practice.add", practice.id), _event("own", practice.id)
        )
    with pytest.raises(ConfigurationError, match="already exists"):
        store.create_account(
            AccountRecord("mirth", "acct-9", "p-0", now),
            Practice(id="p-0"),
            _event("x", "p-0"),
            _event("y", "p-0"),
        )
    page = store.accounts("mirth", after="acct-0", limit=1)
    assert [a.account_id for a in page] == ["acct-1"]
    owner = store.account_of_practice("p-2")
    assert owner is not None and owner.account_id == "acct-2"
    assert store.rename_practice("p-1", "Renamed", _event("rename", "p-1"))
    assert Registry(store).practice("p-1") == Practice(id="p-1", name="Renamed")  # one database for both

    login = LoginRecord("dr.smith", "p-0", "u-1", "scrypt$y", True, now, now)
    assert store.save_login(login, _event("login", "dr.smith")) is True
    assert store.save_login(login, _event("login", "dr.smith")) is False  # replaced, not created
    with pytest.raises(ConfigurationError, match="belongs to another practice"):
        store.save_login(
            LoginRecord("dr.smith", "p-1", None, "h", True, now, now), _event("login", "dr.smith")
        )
    assert [entry.login_id for entry in store.logins("p-0")] == ["dr.smith"]

    actions = [entry.action for entry in reversed(store.audit_log(100))]
    assert actions.count("practice.add") == 3 and actions.count("login") == 2 and "rename" in actions


def test_message_records(store: SqlAccountStore) -> None:
    now = datetime.now(UTC)
    store.add_application(ApplicationRecord("app", "App", "h", True, now, now), _event("a", "app"))
    store.create_account(
        AccountRecord("app", "a1", "p-1", now),
        Practice(id="p-1", name="One"),
        _event("p", "p-1"),
        _event("o", "p-1"),
    )
    big = 5 * 1024**3  # more than a 32-bit column holds: the sizes of a large send
    record = MessageRecord(
        "m-1",
        "p-1",
        "app",
        None,
        None,
        "a@b.example",
        ("c@d.example",),
        1,
        big,
        now,
        detail={"lease_until": "t0"},
    )
    store.add_message(record)
    assert store.renew_message("m-1", {"lease_until": "t1"}) is True  # the sending process's lease, renewed
    stored = store.message("m-1")
    assert stored is not None and stored.outcome is None and stored.detail == {"lease_until": "t1"}
    store.finish_message("m-1", "Success", {"status": "Success"}, now)
    assert store.renew_message("m-1", {"lease_until": "t2"}) is False  # once finished, no lease to renew
    assert store.renew_message("no-such-message", {"lease_until": "t2"}) is False
    stored = store.message("m-1")
    assert stored is not None and stored.total_bytes == big and stored.outcome == "Success"
    assert stored.recipients == ("c@d.example",) and stored.detail == {"status": "Success"}


def test_message_records_do_not_wait_for_a_registry_change(postgres_url: str) -> None:
    """Every MessageSend writes its record twice: those writes rely on their own keys only, so they must not
    queue behind the cluster-wide change lock that registry changes take (PostgreSQL; SQLite has one writer
    for everything). A change held open while messages are recorded: the records are written at once."""
    with open_registry(postgres_url) as registry:
        registry.init(actor="test")
    now = datetime.now(UTC)
    store = SqlAccountStore(open_database(postgres_url, lock_timeout=0.5))
    holder = open_database(postgres_url)
    try:
        store.add_application(ApplicationRecord("app", "App", "h", True, now, now), _event("a", "app"))
        store.create_account(
            AccountRecord("app", "a1", "p-1", now), Practice(id="p-1"), _event("p", "p-1"), _event("o", "p-1")
        )
        with holder.transaction(Access.CHANGE):  # an administrator's change, still running
            record = MessageRecord(
                "m-1", "p-1", "app", None, None, "a@b.example", ("c@d.example",), 1, 10, now
            )
            store.add_message(
                record
            )  # before: waited for the change lock, then "busy" after the lock timeout
            store.finish_message("m-1", "Success", {"status": "Success"}, now)
        stored = store.message("m-1")
        assert stored is not None and stored.outcome == "Success"
    finally:
        store.close()
        holder.close()
