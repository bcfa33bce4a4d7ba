"""Auth primitives: hashing, API keys, bearer parsing, CSRF, roles, redirects."""

from __future__ import annotations

import pytest

from services.dashboard import auth
from services.dashboard.auth import Principal, Role
from services.dashboard.pages.render import safe_next


def test_password_when_hashed_then_verifies_only_the_same_password() -> None:
    stored = auth.hash_password("correct horse")
    assert stored.startswith("$argon2id$")
    assert auth.verify_password(stored, "correct horse")
    assert not auth.verify_password(stored, "wrong horse")
    assert not auth.verify_password("not-a-hash", "correct horse")


def test_password_when_no_user_then_false_even_for_the_dummy_password() -> None:
    assert not auth.verify_password(None, "not-a-real-password")


def test_api_key_when_created_then_random_prefixed_and_hash_is_stable() -> None:
    first, second = auth.new_api_key(), auth.new_api_key()
    assert first.startswith("vpk_") and len(first) > 40 and first != second
    assert auth.hash_api_key(first) == auth.hash_api_key(first) != auth.hash_api_key(second)
    assert first not in auth.hash_api_key(first)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token_when_header_given_then_token_or_none(
    header: str | None, token: str | None
) -> None:
    assert auth.bearer_token(header) == token


def test_csrf_when_token_created_then_only_it_matches() -> None:
    session: dict[str, object] = {}
    token = auth.csrf_token(session)
    assert auth.csrf_token(session) == token  # stable within the session
    assert auth.csrf_matches(session, token)
    assert not auth.csrf_matches(session, token + "x")
    assert not auth.csrf_matches(session, None)
    assert not auth.csrf_matches({}, token)


def test_session_when_started_then_old_contents_gone_and_new_csrf() -> None:
    session: dict[str, object] = {"uid": 1, "csrf": "old", "other": "x"}
    auth.start_session(session, 7, "$argon2id$hash")
    assert session["uid"] == 7 and session["csrf"] != "old" and "other" not in session
    assert session["pw"] == auth.password_fingerprint("$argon2id$hash")


def test_roles_when_compared_then_ordered_viewer_to_superadmin() -> None:
    assert Role.superadmin.at_least(Role.admin)
    assert Role.admin.at_least(Role.operator)
    assert Role.operator.at_least(Role.operator)
    assert not Role.viewer.at_least(Role.operator)


def test_principal_when_bound_to_client_then_sees_only_it() -> None:
    user = Principal(name="u", role=Role.admin, client_id="acme")
    root = Principal(name="r", role=Role.superadmin, client_id=None)
    assert user.sees("acme") and not user.sees("globex")
    assert root.sees("acme") and root.sees("globex")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/config", "/config"),
        ("/cameras/x?y=1", "/cameras/x?y=1"),
        ("//evil.example/", "/cameras"),
        ("/\\evil.example", "/cameras"),
        ("https://evil.example/", "/cameras"),
        ("", "/cameras"),
        (None, "/cameras"),
    ],
)
def test_safe_next_when_target_given_then_only_same_site_paths(
    target: str | None, expected: str
) -> None:
    assert safe_next(target) == expected
