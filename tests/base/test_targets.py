"""One target-id rule: the registry, the enrolment API and the CLI all take it from base.targets."""

from __future__ import annotations

import pytest

from base.errors import HeadcastError
from base.targets import TargetIdError, is_target_id, validate_target_id


@pytest.mark.parametrize("good", ["woman", "a", "carol-target", "x_1", "0abc", "a" * 64])
def test_valid_ids_pass_unchanged(good: str) -> None:
    assert is_target_id(good) and validate_target_id(good) == good


@pytest.mark.parametrize("bad", ["", "../etc", "Alice", "a/b", "a" * 65, "-x", "_x", "x y", ".hidden", "é", None, 7])
def test_invalid_ids_are_refused_with_the_rule(bad: object) -> None:
    assert not is_target_id(bad)
    with pytest.raises(TargetIdError, match="lowercase letters, digits") as error:
        validate_target_id(bad)
    assert isinstance(error.value, HeadcastError) and isinstance(error.value, ValueError)
