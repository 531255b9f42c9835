"""API keys: generation, hashed storage, lookup, roles, scopes and tenants."""

from __future__ import annotations

import itertools

import pytest
from typer.testing import CliRunner

from headrace.cli import app
from headrace.server import ROLES, AuthError, KeyStore, authorize


@pytest.fixture
def store(tmp_path):
    s = KeyStore(tmp_path / "keys.db")
    yield s
    s.close()


def test_keys_are_prefixed_random_and_stored_only_as_hashes(store, tmp_path) -> None:
    keys = [store.create("public", "read")[0] for _ in range(20)]
    assert all(k.startswith("clk_") and len(k) >= 4 + 43 for k in keys)
    assert len(set(keys)) == 20
    raw = (tmp_path / "keys.db").read_bytes() + (tmp_path / "keys.db-wal").read_bytes()
    assert not any(k.encode() in raw or k[4:].encode() in raw for k in keys)


def test_lookup_finds_active_keys_only(store) -> None:
    key, grant = store.create("acme", "write", ("prices",), "ingest bot")
    found = store.lookup(key)
    assert found is not None and (found.tenant, found.role, found.graphs, found.label) == ("acme", "write", ("prices",), "ingest bot")
    assert store.lookup(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.lookup("not-a-key") is None and store.lookup(None) is None
    assert store.revoke(grant.key_id)
    assert store.lookup(key) is None and not store.revoke(grant.key_id)


@pytest.mark.parametrize(("role", "action"), list(itertools.product(ROLES, ROLES)))
def test_roles_allow_their_level_and_below(store, role, action) -> None:
    key, _ = store.create("acme", role)
    grant = store.lookup(key)
    if ROLES.index(role) >= ROLES.index(action):
        authorize(grant, tenant="acme", action=action, graph="g")
    else:
        with pytest.raises(AuthError) as info:
            authorize(grant, tenant="acme", action=action, graph="g")
        assert info.value.status == 403 and f"needs '{action}'" in str(info.value)


def test_other_tenants_and_out_of_scope_graphs_are_not_found(store) -> None:
    key, _ = store.create("acme", "admin", ("prices",))
    grant = store.lookup(key)
    authorize(grant, tenant="acme", action="admin", graph="prices")
    for tenant, graph in (("globex", "prices"), ("acme", "risk")):
        with pytest.raises(AuthError) as info:
            authorize(grant, tenant=tenant, action="read", graph=graph)
        assert info.value.status == 404  # not 403: existence is not revealed
    with pytest.raises(AuthError) as info:
        authorize(None, tenant="acme", action="read")
    assert info.value.status == 401


def test_keys_cli(tmp_path) -> None:
    runner = CliRunner()
    data = str(tmp_path / "data")
    created = runner.invoke(app, ["keys", "create", "--tenant", "acme", "--role", "admin", "--label", "ops", "-d", data])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    assert key.startswith("clk_")
    listed = runner.invoke(app, ["keys", "list", "-d", data])
    assert listed.exit_code == 0 and "acme\tadmin\t*\tops" in listed.stdout and key not in listed.stdout
    key_id = listed.stdout.split("\t")[0]
    assert runner.invoke(app, ["keys", "revoke", key_id, "-d", data]).exit_code == 0
    assert runner.invoke(app, ["keys", "revoke", key_id, "-d", data]).exit_code == 1
    bad = runner.invoke(app, ["keys", "create", "--role", "root", "-d", data])
    assert bad.exit_code == 1 and "role must be one of read, write, admin" in bad.output
