"""Sampling options a user sets: refused with a message naming the option and what is valid."""

from __future__ import annotations

import pytest

from engine.contract.config import ConfigError, validate
from tests.conftest import podium


@pytest.mark.parametrize("value", [0, 1.5])
def test_a_top_p_outside_0_to_1_is_refused_naming_the_field(value):
    with pytest.raises(ConfigError) as refused:
        validate({"sample": {"top_p": value}}, source="my.yaml")
    assert "my.yaml" in str(refused.value)
    assert f"sample.top_p: {value} is not valid" in str(refused.value)


def test_podium_sample_refuses_a_top_p_outside_0_to_1_before_loading_anything(tmp_path):
    result = podium("sample", str(tmp_path), "--out", str(tmp_path / "x.mid"), "--top-p", "1.5")
    assert result.returncode == 2
    assert "--top-p: 1.5 is not valid" in result.stderr
    assert not (tmp_path / "x.mid").exists()
