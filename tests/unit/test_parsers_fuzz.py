"""The parsers of what people type, fed anything: each answers with a value that
holds up, or a UsageError (a clear line, exit 2), never another exception."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tests.conftest import make_sim
from tests.unit.helpers import connect
from xsctl.config import Config, Profile, check_profile_name, normalize_url
from xsctl.sim import Simulator
from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import UsageError
from xsctl.xapi.models import INT64_MAX, parse_size
from xsctl.xapi.ops.resolve import resolve
from xsctl.xapi.transport import Endpoint

# the autouse isolated_home fixture is per test, not per example: fine here
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KiB": 1024, "M": 1024**2, "MiB": 1024**2,
         "G": 1024**3, "GB": 1024**3, "g": 1024**3, "T": 1024**4, "TiB": 1024**4}

# what people paste: digits of every script, units, spaces, signs, huge numbers
size_text = st.one_of(
    st.text(),
    st.text(alphabet="0123456789.٣४๓ KMGTBikmgtb-+e_", max_size=30),
    st.builds(lambda n, u: f"{n}{u}", st.integers(min_value=0, max_value=10**30),
              st.sampled_from(list(UNITS))),
)


@FUZZ
@given(size_text)
@example("9" * 400)
@example("٣G")
@example("9223372036854775808B")
def test_parse_size_gives_an_int64_or_a_usage_error(text: str) -> None:
    try:
        value = parse_size(text, default_unit="")
    except UsageError as e:
        assert "\n" not in str(e) and len(str(e)) < 200
        return
    assert isinstance(value, int) and 0 <= value <= INT64_MAX
    assert text.isascii()  # no Arabic-Indic or Devanagari digits got through


@FUZZ
@given(st.integers(min_value=0, max_value=10**25), st.sampled_from(list(UNITS)),
       st.sampled_from(["", " "]))
def test_parse_size_is_exact(n: int, unit: str, space: str) -> None:
    want = n * UNITS[unit]
    try:
        got = parse_size(f"{n}{space}{unit}", default_unit="")
    except UsageError:
        assert want > INT64_MAX
        return
    assert got == want


@FUZZ
@given(st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False),
       st.sampled_from(["K", "M", "G"]))
def test_fractional_sizes_round_down_to_bytes(d: object, unit: str) -> None:
    text = f"{d}{unit}"
    assume("E" not in text.upper().replace(unit.upper(), ""))
    assert parse_size(text) == int(Fraction(str(d)) * UNITS[unit])


url_text = st.one_of(
    st.text(),
    st.builds(lambda s, h, p: f"{s}{h}{p}",
              st.sampled_from(["", "https://", "http://", "unix://", "ftp://", "https://u:p@"]),
              st.one_of(st.from_regex(r"[a-z0-9._-]{0,70}", fullmatch=True),
                        st.ip_addresses(v=4).map(str),
                        st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
                        st.text(max_size=20)),
              st.one_of(st.just(""), st.integers(-5, 70000).map(lambda p: f":{p}"),
                        st.text(max_size=6))),
)


@FUZZ
@given(url_text)
@example("https://" + "a" * 300)
@example("https://[fe80::1%25lo]")
@example("https://127.0.0.1:0")
@example("https://[::1")
def test_urls_normalise_once_or_are_refused(text: str) -> None:
    try:
        url = normalize_url(text)
    except UsageError:
        return
    assert normalize_url(url) == url  # canonical
    ep = Endpoint.parse(url)
    assert ep.url == url
    assert ep.scheme in ("https", "http", "unix")
    assert ep.scheme == "unix" or 0 < ep.port < 65536
    assert "@" not in url


@FUZZ
@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126,
                                      exclude_characters="@/#?[]"), min_size=4))
def test_a_url_with_a_password_is_refused_without_repeating_it(password: str) -> None:
    """The refusal is the same sentence whatever the password: nothing of it shows."""
    said = []
    for pw in (password, "x" * 8):
        with pytest.raises(UsageError) as e:
            normalize_url(f"https://root:{pw}@pool.example")
        said.append(str(e.value))
    assert said[0] == said[1] and "--password-file" in said[0]


@FUZZ
@given(st.one_of(st.text(max_size=80), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,70}",
                                                      fullmatch=True)))
@example("lab\n")
@example("local")
def test_profile_names_are_checked_and_survive_the_file(name: str) -> None:
    try:
        check_profile_name(name)
    except UsageError:
        return
    # one word a shell, a TOML key and a menu carry unchanged; not the built-in one
    assert name.isprintable() and name.split() == [name] and name != "local"
    path = Path(Config().path)
    cfg = Config(path)
    cfg.add(Profile(name=name, url="https://pool.example"), replace=True)
    cfg.save()
    assert name in Config(path).profiles


@pytest.fixture(scope="module")
def pool_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cache]:
    # set up before the per-test isolated_home: its own state folder, or its pin goes
    # to whatever folder is current, where another simulator that had the same port
    # may have left a different one (a changed certificate, refused)
    state = tmp_path_factory.mktemp("pool-cache-state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_STATE_HOME", str(state))
        mp.setenv("XDG_CONFIG_HOME", str(state / "config"))
        s: Simulator = make_sim()
        c = connect(s)
    try:
        yield c.cache
    finally:
        c.close()
        s.stop()


@FUZZ
@given(st.one_of(st.text(), st.sampled_from(["web-01", "db-01", " db-01 ", "OpaqueRef:x", "0"])))
def test_names_resolve_to_one_object_or_a_usage_error(pool_cache: Cache, spec: str) -> None:
    for cls, kind in (("VM", "VM"), ("host", "host"), ("SR", "SR")):
        try:
            ref = resolve(pool_cache, cls, spec, kind=kind)
        except UsageError as e:
            assert str(e)
            continue
        assert pool_cache.get(cls, ref) is not None

