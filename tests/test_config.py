"""Config: defaults in one place, every bad input named by field, value and what is allowed."""

from __future__ import annotations

import pytest
import yaml

from engine.contract import config as C
from tests.conftest import podium

BAD = [
    ({"run": {"max_steps": 0}}, "run.max_steps", "greater than or equal to 1"),
    ({"run": {"max_steps": "many"}}, "run.max_steps", "valid integer"),
    ({"run": {"precision": "fp8"}}, "run.precision", "'auto', 'fp32', 'bf16' or 'fp16'"),
    ({"run": {"device": "tpu"}}, "run.device", "'auto', 'cpu' or 'cuda'"),
    ({"optim": {"lrr": 0.1}}, "optim.lrr", "valid keys here: lr,"),
    ({"optim": {"lr": -1}}, "optim.lr", "greater than 0"),
    ({"optim": {"schedule": "exp"}}, "optim.schedule", "'cosine', 'linear' or 'constant'"),
    ({"optim": {"beta2": 1.0}}, "optim.beta2", "less than 1"),
    ({"data": {"seq_len": 100}}, "data.seq_len", "multiple of 8"),
    ({"data": {"val_fraction": 1.5}}, "data.val_fraction", "less than 1"),
    ({"data": {"source": "midi_dir"}}, "data.path", "required"),
    ({"data": {"transpose": 13}}, "data.transpose", "less than or equal to 12"),
    ({"model": {"d_model": 64, "n_heads": 5}}, "n_heads (5) must divide d_model (64)", ""),
    ({"tokenizer": {"pitch_low": 90, "pitch_high": 40}}, "pitch_low (90) must be below pitch_high (40)", ""),
    ({"batch": {"global_batch_size": 4, "micro_batch_size": 8}}, "batch.micro_batch_size (8) exceeds", ""),
    ({"nonsense": {}}, "nonsense", "valid keys here: run, data"),
    ({"run": 5}, "run", "valid dictionary"),
]


@pytest.mark.parametrize("data, field, allowed", BAD, ids=[b[1] for b in BAD])
def test_bad_values_name_the_field_and_what_is_allowed(data, field, allowed):
    with pytest.raises(C.ConfigError) as err:
        C.validate(data)
    text = str(err.value)
    assert field in text and allowed in text


def test_defaults_yaml_lists_every_field_and_reloads_to_the_defaults():
    text = C.defaults_yaml()
    assert C.validate(yaml.safe_load(text)) == C.Config()
    for section, field in C.Config.model_fields.items():
        for name in field.annotation.model_fields:
            assert f"  {name}:" in text, f"{section}.{name} missing from --print-defaults"


def test_builtin_default_and_smoke_configs_are_valid():
    assert C.load().data.source == "bach"
    smoke = C.load(C.resources_dir() / "smoke.yaml")
    assert smoke.model.d_model < C.Config().model.d_model


def test_overrides_parse_yaml_values_and_reject_bad_syntax():
    cfg = C.load(None, ["optim.lr=3e-4", "run.max_steps=7", "data.max_pieces=4"])
    assert (cfg.optim.lr, cfg.run.max_steps, cfg.data.max_pieces) == (3e-4, 7, 4)
    with pytest.raises(C.ConfigError, match="expected section.key=value"):
        C.load(None, ["optim.lr"])
    with pytest.raises(C.ConfigError, match="optim.lr: 'fast'"):
        C.load(None, ["optim.lr=fast"])


def test_yaml_syntax_error_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  max_steps: 10\n  seed: [1, 2\n")
    with pytest.raises(C.ConfigError, match=r"line \d+, column \d+: YAML syntax error"):
        C.load(bad)


def test_world_size_must_split_the_batch():
    cfg = C.validate({"batch": {"global_batch_size": 12, "micro_batch_size": 4}})
    cfg.check_world_size(3)
    with pytest.raises(C.ConfigError, match="does not split over 5 ranks"):
        cfg.check_world_size(5)
    with pytest.raises(C.ConfigError, match="micro_batch_size: 4 does not divide the 6"):
        cfg.check_world_size(2)


@pytest.mark.slow
def test_cli_validate_and_print_defaults(tmp_path):
    good = podium("config", "--validate", str(C.resources_dir() / "smoke.yaml"))
    assert good.returncode == 0 and "valid" in good.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: 0\n")
    result = podium("config", "--validate", str(bad))
    assert result.returncode == 2
    assert "optim.lr: 0 is not valid" in result.stderr and str(bad) in result.stderr
    defaults = podium("config", "--print-defaults")
    assert C.validate(yaml.safe_load(defaults.stdout)) == C.Config()


@pytest.mark.slow
def test_run_with_bad_config_exits_2_before_starting_anything(tmp_path):
    run_dir = tmp_path / "never"
    result = podium("run", "-r", str(run_dir), "--set", "model.n_layers=0")
    assert result.returncode == 2
    assert "model.n_layers: 0 is not valid" in result.stderr
    assert not run_dir.exists()
