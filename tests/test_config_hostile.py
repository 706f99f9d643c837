"""A hostile config file or --set value is refused with exit 2 and a message naming the line or the field.

Each case of issue 14 runs through the real CLI (a hang fails on the subprocess timeout) and in-process;
property-based tests generate valid, wrong-typed and hostile configs.
"""

from __future__ import annotations

import os
import re
import string
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.contract import config as C
from engine.contract import safe_yaml
from tests.conftest import podium

CLI_TIMEOUT_S = 20  # a refusal takes well under a second; a hang or a bomb would not finish


def _bomb_under_unknown_key() -> str:
    lines = ["nonsense:", "  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


# name, file content, what the message must say (a line, or a field, and why)
HOSTILE_FILES = [
    ("not-utf8", b"run:\n  max_steps: 10\n  seed: \xff\xfe\n", ["line 3: not UTF-8", "offset 29"]),
    ("date", "run:\n  seed: 2024-01-01\n", ["line 2, column 9", "reads as a date; quote it"]),
    ("binary", "run:\n  seed: !!binary aGVsbG8=\n", ["line 2, column 9", "!!binary is not allowed"]),
    ("set", "data:\n  path: !!set {a, b}\n", ["line 2, column 9", "!!set is not allowed"]),
    ("python-object", "run:\n  seed: !!python/object/apply:os.system [echo]\n", ["line 2", "is not allowed"]),
    ("date-key", "debug:\n  slow_ranks_ms:\n    2024-01-01: 3\n", ["line 3, column 5", "key must be text"]),
    ("alias-cycle", "run: &r\n  seed: *r\n", ["line 2, column 9", "recursive alias"]),
    ("nesting-flow", "run:\n  seed: " + "[" * 1500 + "]" * 1500 + "\n", ["line 2", "nest"]),
    ("nesting-block", "run:\n  seed:\n    " + "- " * 1500 + "1\n", ["line 3", "nest"]),
    ("5000-digit-int", "run:\n  seed: " + "9" * 5000 + "\n", ["line 2, column 9", "5000 digits"]),
    ("billion-laughs", _bomb_under_unknown_key(), ["line ", "more than 10000 values"]),
    ("seed-beyond-numpy", "run:\n  seed: 4294967296\n", ["run.seed: 4294967296", "less than or equal to 4294967295"]),
    ("oversize", "# padding\n" * (safe_yaml.MAX_CONFIG_BYTES // 10 + 1), ["larger than 1024 KiB"]),
]


def _hostile_path(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "config.fifo"
    os.mkfifo(path)
    return path


def _assert_short_refusal(stderr: str, expected: list[str]) -> None:
    assert "Traceback" not in stderr
    for text in expected:
        assert text in stderr
    assert len(stderr) < 1000, "a refusal is a few lines, whatever the input's size"


@pytest.mark.parametrize("name, content, expected", HOSTILE_FILES, ids=[case[0] for case in HOSTILE_FILES])
def test_validate_refuses_a_hostile_file_with_exit_2_naming_the_line_or_field(tmp_path, name, content, expected):
    path = _hostile_path(tmp_path, name, content)
    result = podium("config", "--validate", str(path), timeout=CLI_TIMEOUT_S)
    assert result.returncode == 2
    _assert_short_refusal(result.stderr, [str(path), *expected])


def test_validate_refuses_a_fifo_without_waiting_for_a_writer(tmp_path):
    path = _fifo(tmp_path)
    result = podium("config", "--validate", str(path), timeout=CLI_TIMEOUT_S)
    assert result.returncode == 2
    _assert_short_refusal(result.stderr, [str(path), "not a regular file"])


def test_run_refuses_a_bomb_and_a_seed_override_before_creating_the_run(tmp_path):
    run_dir = tmp_path / "never"
    bomb = _hostile_path(tmp_path, "bomb", _bomb_under_unknown_key())
    result = podium("run", "-c", str(bomb), "-r", str(run_dir), timeout=CLI_TIMEOUT_S)
    assert result.returncode == 2
    _assert_short_refusal(result.stderr, ["more than 10000 values"])
    result = podium("run", "-r", str(run_dir), "--set", "run.seed=4294967296", timeout=CLI_TIMEOUT_S)
    assert result.returncode == 2
    _assert_short_refusal(result.stderr, ["run.seed: 4294967296"])
    assert not run_dir.exists()


@pytest.mark.parametrize("name, content, expected", HOSTILE_FILES, ids=[case[0] for case in HOSTILE_FILES])
def test_load_refuses_a_hostile_file_in_process(tmp_path, name, content, expected):
    with pytest.raises(C.ConfigError) as err:
        C.load(_hostile_path(tmp_path, name, content))
    for text in expected:
        assert text in str(err.value)


def test_load_refuses_what_is_not_a_regular_file(tmp_path):
    for path in (_fifo(tmp_path), tmp_path, Path("/dev/zero")):
        with pytest.raises(C.ConfigError, match="not a regular file"):
            C.load(path)


SET_CASES = [
    ("run.seed=2024-01-01", "line 1, column 1: 2024-01-01 reads as a date"),
    ("run.seed=" + "[" * 500 + "]" * 500, "line 1"),
    ("run.seed=" + "7" * 5000, "5000 digits"),
    ("run.seed=&a [*a]", "recursive alias"),
    ("run.seed=4294967296", "run.seed: 4294967296"),
    ("run.seed=\udcff", "line 1: '\\udcff' is not a Unicode character"),
    ("run.seed=\x00", "line 1: character"),
    ("a." * 200 + "b=1", "nested deeper than 100 levels"),
]


@pytest.mark.parametrize("override, expected", SET_CASES, ids=[c[1][:30] for c in SET_CASES])
def test_set_overrides_go_through_the_same_limits(override, expected):
    with pytest.raises(C.ConfigError) as err:
        C.load(None, [override])
    assert expected in str(err.value) and len(str(err.value)) < 1000


FIELD_LIMITS = [
    ({"run": {"seed": 2**32}}, "run.seed: 4294967296 is not valid: Input should be less than or equal to 4294967295"),
    ({"batch": {"global_batch_size": 2**20 + 1}}, "batch.global_batch_size: 1048577 is not valid"),
    ({"music": {"num_samples": 1, "seeds": [2**64]}}, "music.seeds: every seed must be in 0..2**64-1"),
]


@pytest.mark.parametrize("data, expected", FIELD_LIMITS, ids=[c[1].split(":")[0] for c in FIELD_LIMITS])
def test_values_beyond_what_the_engine_can_use_are_refused_naming_the_field(data, expected):
    with pytest.raises(C.ConfigError) as err:
        C.validate(data)
    assert expected in str(err.value)


def test_seed_leaves_room_for_every_rank():
    cfg = C.validate({"run": {"seed": C.MAX_SEED - 1}})
    cfg.check_world_size(2)
    with pytest.raises(C.ConfigError, match=r"run.seed: 4294967294 \+ rank .* use at most 4294967293 with 3 ranks"):
        cfg.check_world_size(3)


def test_what_yaml_allows_in_a_config_still_loads():
    text = (
        "base: &base {max_steps: 7, seed: 0x10}\n"
        "run:\n  <<: *base\n  log_interval: 1_000\n"
        "optim: {lr: 3.0e-4, weight_decay: .5}\n"
        "data: {path: '2024-01-01', cache_dir: ~}\n"
        "debug: {slow_ranks_ms: {1: 30}}\n"
    )
    data = C.parse_yaml(text)
    del data["base"]
    cfg = C.validate(data)
    assert (cfg.run.max_steps, cfg.run.seed, cfg.run.log_interval) == (7, 16, 1000)
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.data.path) == (3e-4, 0.5, "2024-01-01")
    assert cfg.debug.slow_ranks_ms == {1: 30.0}


# --- property-based: generated configs ---------------------------------------------------------------------------


def _scalar_fields() -> list[tuple[str, str, typing.Any]]:
    """(section, key, field) for every field of a plain type: what a generator can fill with valid values."""
    fields = []
    for section, section_field in C.Config.model_fields.items():
        for key, field in section_field.annotation.model_fields.items():
            if _valid_values(field) is not None:
                fields.append((section, key, field))
    return fields


def _bounds(field) -> dict[str, typing.Any]:
    bounds: dict[str, typing.Any] = {}
    for meta in field.metadata:
        for name in ("ge", "gt", "le", "lt", "multiple_of"):
            if hasattr(meta, name):
                bounds[name] = getattr(meta, name)
    return bounds


def _valid_values(field) -> st.SearchStrategy | None:
    kinds = [a for a in typing.get_args(field.annotation) if a is not type(None)] or [field.annotation]
    if typing.get_origin(field.annotation) is typing.Literal:
        return st.sampled_from(typing.get_args(field.annotation))
    optional = type(None) in typing.get_args(field.annotation)
    b = _bounds(field)
    if kinds[0] is bool:
        values = st.booleans()
    elif kinds[0] is int:
        low = b.get("ge", b.get("gt", -1) + 1) if ("ge" in b or "gt" in b) else -(10**6)
        high = b.get("le", b.get("lt", 1) - 1) if ("le" in b or "lt" in b) else 10**12
        step = b.get("multiple_of", 1)
        values = st.integers(-(-low // step), high // step).map(lambda n: n * step)
    elif kinds[0] is float:
        values = st.floats(
            min_value=b.get("ge", b.get("gt", -1e6)),
            max_value=b.get("le", b.get("lt", 1e6)),
            exclude_min="gt" in b,
            exclude_max="lt" in b,
            allow_nan=False,
        )
    elif kinds[0] is str:
        # Not YAML's own line breaks (NEL, LS, PS): PyYAML dumps them raw with allow_unicode and YAML reads a raw
        # one back as a break, so the test's dump, not the loader, would change the value.
        values = st.text(st.characters(blacklist_characters="\x85\u2028\u2029"), min_size=1, max_size=40)
    else:
        return None
    return st.one_of(st.none(), values) if optional else values


SCALAR_FIELDS = _scalar_fields()


@st.composite
def valid_field_values(draw) -> dict[str, dict[str, typing.Any]]:
    """A few fields, each set to a value its own constraints allow (cross-field checks may still refuse)."""
    chosen = draw(st.lists(st.sampled_from(SCALAR_FIELDS), max_size=6, unique_by=lambda f: (f[0], f[1])))
    data: dict[str, dict[str, typing.Any]] = {}
    for section, key, field in chosen:
        data.setdefault(section, {})[key] = draw(_valid_values(field))
    return data


WRONG_VALUES = st.one_of(
    st.text(max_size=30),
    # Longer integers are refused by the loader whatever the field (tested above).
    st.integers(min_value=1 - 10**safe_yaml.MAX_INT_DIGITS, max_value=10**safe_yaml.MAX_INT_DIGITS - 1),
    st.floats(),  # NaN and infinities included
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=5),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)

FRAGMENTS = st.sampled_from(
    [
        "run:", "  seed: ", "- ", "[", "]", "{", "}", ",", ":", "&a ", "*a", "&b ", "*b", "<<: *a", "!!binary ",
        "!!set ", "!!timestamp ", "!!python/name:os.system ", "!!int ", "!!float ", "!!bool ", "!!str ", "!!map ",
        "!!seq ", "!!omap ", "!custom ", "2024-01-01", "2024-01-01T10:00:00Z", "9" * 40, "0x" + "f" * 40, "1:30",
        ".nan", ".inf", "~", "yes", "'", '"', "|", ">", "\n", "\n  ", "\t", "#", "---", "...", "%YAML 1.1\n",
        "\x00", "\x85", "\ufeff", "\udcff", "é", "? ", "=", "\\", "1e400", "-", "_",
    ]
)  # fmt: skip

HOSTILE_VALUES = st.sampled_from(
    [
        "!!binary aGk=", "!!set {a, b}", "2024-01-01", "!!timestamp 2024-01-01", "!!python/object/apply:os.system [ls]",
        "9" * 40, "-" + "9" * 31, "0x" + "f" * 40, "!!int abc", "!!int ''", "!!float x", "!!bool maybe", "!!map a",
        "!!seq {a: 1}", "!!str [1]", "!!null [1]", "*nowhere", ".nan", "-.inf", "!custom x", "190:20:30", "~",
        "{? [a]: b}", "{2024-01-01: 1}", "{1.5: 1}", "{null: 1}", "{yes: 1}", "{{a: 1}: 2}", "[[1]]", "&self [*self]",
        "&m {a: *m}", "{<<: *base}", "{<<: [*base, *base]}", "'\\x00'", '"\\ud800"',
    ]
)  # fmt: skip


@st.composite
def hostile_documents(draw) -> str:
    """Well-formed YAML with config sections and keys, holding hostile values, aliases and alias bombs."""
    lines = ["base: &base " + draw(st.sampled_from(["{seed: 1}", "[1, 2]", "lol"]))]
    fanout, levels = draw(st.integers(1, 12)), draw(st.integers(1, 8))
    lines += ["bomb0: &bomb0 [lol]"] + [
        f"bomb{i}: &bomb{i} [{', '.join([f'*bomb{i - 1}'] * fanout)}]" for i in range(1, levels)
    ]
    for section, key, _ in draw(st.lists(st.sampled_from(SCALAR_FIELDS), min_size=1, max_size=4)):
        alias = st.sampled_from(["*base", f"*bomb{levels - 1}", f"[*bomb{levels - 1}, *bomb0]"])
        lines.append(f"{section}:\n  {key}: {draw(st.one_of(HOSTILE_VALUES, alias))}")
    return "\n".join(lines) + "\n"


HOSTILE_TEXT = st.one_of(
    hostile_documents(),
    st.lists(st.one_of(FRAGMENTS, st.text(string.printable, max_size=8)), max_size=40).map("".join),
    st.integers(2, 3000).map(lambda n: "a: " + "[" * n + "]" * n),
    st.integers(2, 3000).map(lambda n: "a: " + "- " * n + "1"),
    st.text(),
)


def _names_a_line_or_field(problem: str, data: typing.Any) -> bool:
    if re.match(r"(line \d+|--set |the top level)", problem):
        return True
    keys = {str(k)[:60] for k in data} if isinstance(data, dict) else set()
    return any(problem.startswith(name) for name in keys | set(C.Config.model_fields))


def _load_or_refuse(text: str) -> C.Config | None:
    """Load as `config --validate` does; the only way out is a Config or a ConfigError naming where."""
    try:
        data = C.parse_yaml(text)
    except C.ConfigError as exc:
        assert all(p.startswith("line ") for p in exc.problems) and len(str(exc)) < 20_000, exc.problems
        return None
    try:
        return C.validate(C.apply_overrides(data, []) if isinstance(data, dict) else data)
    except C.ConfigError as exc:
        assert exc.problems and all(_names_a_line_or_field(p, data) for p in exc.problems), exc.problems
        assert len(str(exc)) < 20_000
        return None


FAST = settings(max_examples=500, deadline=None, database=None, suppress_health_check=list(HealthCheck))
SLOW = settings(FAST, max_examples=2_000)  # more than the fast run, within the suite's 30 minutes


def _valid_config_loads(data: dict, style: bool | None) -> None:
    try:
        expected = C.Config.model_validate(data)
    except ValueError:
        expected = None  # a cross-field check refuses this combination; then the loader must refuse it too
    loaded = _load_or_refuse(yaml.safe_dump(data, default_flow_style=style, allow_unicode=True))
    assert loaded == expected


def _wrong_value_is_named(empty_file: Path, section: str, key: str, value: typing.Any) -> None:
    """Refused naming the field, in a file and in --set, or accepted as the schema converts it (3.0 to 3)."""
    try:
        expected = C.Config.model_validate({section: {key: value}}).model_dump_json()
    except ValueError:
        expected = None
    for loaded in (
        _load_or_refuse(yaml.safe_dump({section: {key: value}})),
        _override_or_refuse(empty_file, f"{section}.{key}={yaml.safe_dump(value, default_flow_style=True)}", key),
    ):
        assert (loaded and loaded.model_dump_json()) == expected


def _override_or_refuse(empty_file: Path, override: str, key: str) -> C.Config | None:
    try:
        return C.load(empty_file, [override])
    except C.ConfigError as exc:
        assert any(key in p or p.startswith("line ") for p in exc.problems), exc.problems
        assert len(str(exc)) < 20_000
        return None


@pytest.fixture(scope="session")
def empty_file(tmp_path_factory) -> Path:
    """A config file that sets nothing, so an override alone decides the result."""
    path = tmp_path_factory.mktemp("config") / "empty.yaml"
    path.write_text("")
    return path


@pytest.mark.slow
@FAST
@given(valid_field_values(), st.sampled_from([None, True, False]))
def test_generated_valid_configs_load_to_what_they_say(data, style):
    _valid_config_loads(data, style)


@pytest.mark.slow
@FAST
@given(st.sampled_from(SCALAR_FIELDS), WRONG_VALUES)
def test_generated_wrong_typed_values_are_refused_naming_the_field(empty_file, field, value):
    _wrong_value_is_named(empty_file, field[0], field[1], value)


@pytest.mark.slow
@FAST
@given(HOSTILE_TEXT)
def test_generated_hostile_yaml_is_refused_naming_the_line_or_field(text):
    _load_or_refuse(text)


@pytest.mark.slow
@FAST
@given(st.binary(max_size=200))
def test_generated_bytes_in_a_file_are_refused_or_loaded(tmp_path_factory, raw):
    path = tmp_path_factory.getbasetemp() / "generated.yaml"
    path.write_bytes(raw)
    try:
        C.load(path)
    except C.ConfigError as exc:
        assert all(_names_a_line_or_field(p, None) or "unknown key" in p for p in exc.problems), exc.problems


@pytest.mark.slow
@SLOW
@given(valid_field_values(), st.sampled_from([None, True, False]))
def test_many_generated_valid_configs_load(data, style):
    _valid_config_loads(data, style)


@pytest.mark.slow
@SLOW
@given(st.sampled_from(SCALAR_FIELDS), WRONG_VALUES)
def test_many_generated_wrong_typed_values_are_named(empty_file, field, value):
    _wrong_value_is_named(empty_file, field[0], field[1], value)


@pytest.mark.slow
@SLOW
@given(HOSTILE_TEXT)
def test_many_generated_hostile_texts_are_refused(text):
    _load_or_refuse(text)


def test_every_section_has_generated_fields():
    assert {section for section, _, _ in SCALAR_FIELDS} == set(C.Config.model_fields)
