"""Who each access policy admits, as a table: every policy × every kind of caller × the two switches
(anonymous search, public metrics). The routes' own policies are checked in tests/api/test_access.py."""

import pytest

from app.api.security import Policy
from app.core.access import Principal, Role

ANONYMOUS = Principal(None)
SEARCH = Principal(Role.SEARCH, key_id=1)
FACTORY = Principal(Role.FACTORY, frozenset({"F1"}), key_id=2)
ADMIN = Principal(Role.ADMIN, key_id=3)
CALLERS = {"anonymous": ANONYMOUS, "search": SEARCH, "factory": FACTORY, "admin": ADMIN}

# policy -> the callers it admits, by (anonymous_search, metrics_public)
ADMITTED = {
    Policy.PUBLIC: {(a, m): set(CALLERS) for a in (False, True) for m in (False, True)},
    Policy.METRICS: {
        **{(a, False): {"admin"} for a in (False, True)},
        **{(a, True): set(CALLERS) for a in (False, True)},
    },
    Policy.READ: {
        **{(False, m): {"search", "factory", "admin"} for m in (False, True)},
        **{(True, m): set(CALLERS) for m in (False, True)},
    },
    Policy.WRITE: {(a, m): {"factory", "admin"} for a in (False, True) for m in (False, True)},
    Policy.ADMIN: {(a, m): {"admin"} for a in (False, True) for m in (False, True)},
}


@pytest.mark.parametrize("policy", list(Policy))
@pytest.mark.parametrize("anonymous_search", [False, True])
@pytest.mark.parametrize("metrics_public", [False, True])
def test_each_policy_admits_exactly_its_callers(policy, anonymous_search, metrics_public):
    admitted = {name for name, caller in CALLERS.items() if policy.admits(caller, anonymous_search, metrics_public)}
    assert admitted == ADMITTED[policy][(anonymous_search, metrics_public)]
