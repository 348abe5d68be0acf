"""Policy data and loader, cross-checked against auditwheel 6.8.2, whose verdicts we must reach."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from importlib import resources

import auditwheel.policy as auditwheel_policy
import pytest
from auditwheel.architecture import Architecture
from auditwheel.libc import Libc

from repairwheel.errors import PolicyError
from repairwheel.policy import ARCHES, LIBCS, Policy, get_policy, load_policies

_AUDITWHEEL_FILES = {"glibc": "manylinux-policy.json", "musl": "musllinux-policy.json"}
# Big-endian ppc64 has no manylinux image after manylinux2014, so no later policy covers it.
_DROPPED_ARCHES = {"manylinux_2_24": {"ppc64"}}
# The glibc 2.17 of manylinux2014's aarch64 image also defines the GLIBC_2.18 version node.
_GLIBC_BEYOND_NAME = {("manylinux_2_17", "aarch64"): {"2.18"}}


def _constrained(libc: str) -> list[Policy]:
    """The family's real policies, most compatible first (``linux`` left out)."""
    return [p for p in load_policies(libc) if p.name != "linux"]


def _numeric(version: str) -> tuple[int, ...] | None:
    return tuple(int(n) for n in version.split(".")) if re.fullmatch(r"[\d.]+", version) else None


@functools.cache
def _auditwheel_raw(libc: str) -> dict[str, set[str]]:
    """auditwheel's own JSON file: policy name -> the arches it lists."""
    text = resources.files("auditwheel.policy").joinpath(_AUDITWHEEL_FILES[libc]).read_text()
    return {p["name"]: set(p["symbol_versions"]) for p in json.loads(text)}


def _auditwheel_set(
    libc: str, arch: str, musl_policy: str | None = None
) -> auditwheel_policy.WheelPolicies:
    """auditwheel's policies for (libc, arch); for musl it loads one (the host's) unless named."""
    return auditwheel_policy.WheelPolicies(
        libc=Libc(libc), arch=Architecture(arch), musl_policy=musl_policy
    )


def _auditwheel_policies(libc: str, arch: str) -> dict[str, auditwheel_policy.Policy]:
    """Every auditwheel policy for (libc, arch), keyed by its name without the arch."""
    if libc == "glibc":
        sets = [_auditwheel_set(libc, arch)]
    else:
        names = [n for n, arches in _auditwheel_raw(libc).items() if arch in arches]
        sets = [_auditwheel_set(libc, arch, name) for name in names]
    return {p.name.removesuffix(f"_{arch}"): p for policies in sets for p in policies}


def _auditwheel_best(libc: str, arch: str, needs: dict[str, set[str]]) -> str:
    """auditwheel's verdict; for musl against our most compatible musllinux policy."""
    musl_policy = _constrained("musl")[0].name if libc == "musl" else None
    verdict = _auditwheel_set(libc, arch, musl_policy).versioned_symbols_policy(needs)
    return verdict.name.removesuffix(f"_{arch}")


def _our_best(libc: str, arch: str, versions: set[str]) -> str:
    return next(
        p.name for p in load_policies(libc, arch) if not p.disallowed_versions(arch, versions)
    )


# --- the data ---------------------------------------------------------------------------------


@pytest.mark.parametrize("libc", LIBCS)
def test_family_policies_list_the_same_prefixes_on_every_arch(libc: str) -> None:
    prefix_sets = {
        frozenset(prefixes) for p in _constrained(libc) for prefixes in p.symbol_versions.values()
    }
    assert len(prefix_sets) == 1


@pytest.mark.parametrize("libc", LIBCS)
def test_newer_policies_keep_the_arches_of_older_ones(libc: str) -> None:
    policies = _constrained(libc)
    for older, newer in zip(policies, policies[1:]):
        lost = older.arches - newer.arches
        assert lost == _DROPPED_ARCHES.get(newer.name, set()), newer.name


@pytest.mark.parametrize("libc", LIBCS)
def test_linux_covers_every_known_arch_without_constraints(libc: str) -> None:
    linux = get_policy("linux", libc=libc)
    assert linux.priority == 0
    assert linux.arches == ARCHES
    assert not linux.whitelist and not linux.blacklist
    assert all(not prefixes for prefixes in linux.symbol_versions.values())


@pytest.mark.parametrize("libc", LIBCS)
def test_allowed_versions_only_grow_as_priority_falls(libc: str) -> None:
    policies = _constrained(libc)
    for older, newer in zip(policies, policies[1:]):
        for arch in older.arches & newer.arches:
            for prefix, versions in older.symbol_versions[arch].items():
                missing = versions - newer.symbol_versions[arch][prefix]
                assert not missing, (newer.name, arch, prefix)


@pytest.mark.parametrize("libc", LIBCS)
def test_whitelists_only_grow_as_priority_falls(libc: str) -> None:
    policies = _constrained(libc)
    for older, newer in zip(policies, policies[1:]):
        assert older.whitelist <= newer.whitelist, newer.name


@pytest.mark.parametrize("libc", LIBCS)
def test_blacklists_name_only_whitelisted_libraries(libc: str) -> None:
    for policy in _constrained(libc):
        assert set(policy.blacklist) <= policy.whitelist, policy.name


@pytest.mark.parametrize("libc", LIBCS)
def test_priorities_are_unique_and_ordered_like_libc_versions(libc: str) -> None:
    policies = _constrained(libc)
    versions = [p.glibc_version if libc == "glibc" else p.musl_version for p in policies]
    assert None not in versions
    assert all(older < newer for older, newer in zip(versions, versions[1:]))
    assert len({p.priority for p in load_policies(libc)}) == len(load_policies(libc))


def test_glibc_policies_allow_no_glibc_newer_than_their_name() -> None:
    for policy in _constrained("glibc"):
        for arch, prefixes in policy.symbol_versions.items():
            newer = {v for v in prefixes["GLIBC"] if (_numeric(v) or ()) > policy.glibc_version}
            assert newer == _GLIBC_BEYOND_NAME.get((policy.name, arch), set())


def test_legacy_aliases_name_their_pep600_policies() -> None:
    aliases = {a: p.name for p in load_policies() for a in p.aliases}
    assert aliases == {
        "manylinux1": "manylinux_2_5",
        "manylinux2010": "manylinux_2_12",
        "manylinux2014": "manylinux_2_17",
    }


@pytest.mark.parametrize("libc", LIBCS)
def test_policy_names_belong_to_their_libc_family(libc: str) -> None:
    prefix = {"glibc": "manylinux_", "musl": "musllinux_"}[libc]
    assert all(p.name.startswith(prefix) for p in _constrained(libc))


# --- the same facts as auditwheel 6.8.2 -------------------------------------------------------


def test_known_arches_are_auditwheels() -> None:
    raw_arches = {a for libc in LIBCS for arches in _auditwheel_raw(libc).values() for a in arches}
    assert raw_arches == ARCHES


@pytest.mark.parametrize("libc", LIBCS)
@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_policy_set_per_arch_matches_auditwheel(libc: str, arch: str) -> None:
    ours = {p.name for p in load_policies(libc, arch)}
    raw = {name for name, arches in _auditwheel_raw(libc).items() if arch in arches}
    assert ours == raw | {"linux"}


@pytest.mark.parametrize("libc", LIBCS)
@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_policy_facts_match_auditwheel(libc: str, arch: str) -> None:
    for name, theirs in _auditwheel_policies(libc, arch).items():
        ours = get_policy(name, arch, libc=libc)
        assert ours.priority == theirs.priority, name
        assert ours.tags(arch) == (theirs.name, *theirs.aliases), name
        assert dict(ours.blacklist) == theirs.blacklist, name
        assert dict(ours.symbol_versions[arch]) == theirs.symbol_versions, name
        if libc == "glibc":
            assert ours.whitelist == theirs.whitelist, name


def test_musl_whitelist_is_the_union_of_auditwheels_per_arch_whitelists() -> None:
    for policy in _constrained("musl"):
        union = set().union(
            *(_auditwheel_policies("musl", a)[policy.name].whitelist for a in policy.arches)
        )
        assert policy.whitelist == union, policy.name


# --- disallowed_versions, against auditwheel's own verdicts -----------------------------------

_CASES = [
    ("glibc", "x86_64", {"libc.so.6": {"GLIBC_2.2.5", "GLIBC_2.14"}}),
    ("glibc", "x86_64", {"libc.so.6": {"GLIBC_2.2.5", "GLIBC_PRIVATE"}}),
    ("glibc", "x86_64", {"libc.so.6": {"GLIBC_2.3"}, "libffi.so.8": {"LIBFFI_BASE_7.0"}}),
    ("glibc", "x86_64", {"libatomic.so.1": {"LIBATOMIC_1.0"}}),
    ("glibc", "x86_64", {"libgcc_s.so.1": {"GCC_7.0.0"}, "libstdc++.so.6": {"GLIBCXX_3.4.30"}}),
    ("glibc", "aarch64", {"libgcc_s.so.1": {"GCC_7.0.0"}}),
    ("glibc", "ppc64le", {"libstdc++.so.6": {"GLIBCXX_LDBL_3.4.10", "GLIBCXX_IEEE128_3.4.29"}}),
    ("glibc", "i686", {"libc.so.6": {"GLIBC"}}),
    ("glibc", "x86_64", {"libc.so.6": {"GLIBC_ABI_DT_RELR"}}),
    ("glibc", "loongarch64", {"libc.so.6": {"GLIBC_2.36"}, "libz.so.1": {"ZLIB_1.2.12"}}),
    ("glibc", "x86_64", {"libgfortran.so.5": {"GFORTRAN_8"}, "libfoo.so": {"GLIBC_2.99"}}),
    ("musl", "x86_64", {"libc.musl-x86_64.so.1": {"GLIBC_2.17"}}),
]


@pytest.mark.parametrize(("libc", "arch", "needs"), _CASES)
def test_best_policy_for_version_needs_matches_auditwheel(
    libc: str, arch: str, needs: dict[str, set[str]]
) -> None:
    versions = set().union(*needs.values())
    assert _our_best(libc, arch, versions) == _auditwheel_best(libc, arch, needs)


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_each_policys_own_versions_get_auditwheels_verdict(arch: str) -> None:
    for policy in load_policies("glibc", arch):
        versions = {f"{k}_{v}" for k, vs in policy.symbol_versions[arch].items() for v in vs}
        expected = _auditwheel_best("glibc", arch, {"lib.so": versions})
        assert _our_best("glibc", arch, versions) == expected, policy.name


def test_glibc_private_is_disallowed_by_every_glibc_policy() -> None:
    for policy in _constrained("glibc"):
        for arch in policy.arches:
            assert policy.disallowed_versions(arch, ["GLIBC_PRIVATE"]) == ("GLIBC_PRIVATE",)


def test_unlisted_prefix_is_never_disallowed() -> None:
    policy = get_policy("manylinux_2_5")
    assert policy.disallowed_versions("x86_64", ["LIBFFI_BASE_7.0", "GFORTRAN_8"]) == ()


def test_listed_empty_prefix_disallows_every_version() -> None:
    policy = get_policy("manylinux_2_5")
    assert not policy.symbol_versions["x86_64"]["LIBATOMIC"]
    assert policy.disallowed_versions("x86_64", ["LIBATOMIC_1.0"]) == ("LIBATOMIC_1.0",)


def test_disallowed_versions_are_sorted_without_duplicates() -> None:
    policy = get_policy("manylinux2014")
    needs = ["GLIBC_2.34", "GLIBC_2.28", "GLIBC_2.34", "GLIBC_2.17"]
    assert policy.disallowed_versions("x86_64", needs) == ("GLIBC_2.28", "GLIBC_2.34")


@pytest.mark.parametrize("name", ["musllinux_1_1", "linux"])
def test_policies_without_prefixes_disallow_nothing(name: str) -> None:
    policy = get_policy(name, libc="musl")
    assert policy.disallowed_versions("x86_64", ["GLIBC_PRIVATE", "GLIBC_2.99"]) == ()


def test_disallowed_versions_rejects_an_arch_the_policy_lacks() -> None:
    with pytest.raises(PolicyError, match="aarch64"):
        get_policy("manylinux1").disallowed_versions("aarch64", ["GLIBC_2.5"])


# --- the loader --------------------------------------------------------------------------------


def test_load_policies_puts_highest_priority_first() -> None:
    priorities = [p.priority for p in load_policies()]
    assert priorities == sorted(priorities, reverse=True)


def test_load_policies_filters_by_libc_and_arch() -> None:
    policies = load_policies("glibc", "riscv64")
    assert policies
    assert all(p.libc == "glibc" and "riscv64" in p.arches for p in policies)
    assert {p.name for p in policies} < {p.name for p in load_policies("glibc")}


def test_load_policies_without_libc_holds_both_families() -> None:
    assert set(load_policies()) == set(load_policies("glibc")) | set(load_policies("musl"))


def test_load_policies_reads_the_data_once() -> None:
    assert all(a is b for a, b in zip(load_policies("musl"), load_policies("musl")))


def test_load_policies_rejects_an_unknown_libc() -> None:
    with pytest.raises(PolicyError, match="uclibc"):
        load_policies("uclibc")


def test_load_policies_rejects_an_unknown_arch() -> None:
    with pytest.raises(PolicyError, match="mips64"):
        load_policies(arch="mips64")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("manylinux_2_17", "manylinux_2_17"),
        ("manylinux2014", "manylinux_2_17"),
        ("manylinux2014_x86_64", "manylinux_2_17"),
        ("musllinux_1_2_aarch64", "musllinux_1_2"),
        ("linux_x86_64", "linux"),
    ],
)
def test_get_policy_accepts_names_aliases_and_tags(name: str, expected: str) -> None:
    assert get_policy(name).name == expected


def test_get_policy_linux_is_glibcs_unless_libc_is_given() -> None:
    assert get_policy("linux_x86_64").libc == "glibc"
    assert get_policy("linux_x86_64", libc="musl").libc == "musl"


@pytest.mark.parametrize(
    ("name", "arch"), [("manylinux_2_5_aarch64", None), ("manylinux1", "aarch64")]
)
def test_get_policy_rejects_an_arch_the_policy_lacks(name: str, arch: str | None) -> None:
    with pytest.raises(PolicyError, match="no aarch64 variant"):
        get_policy(name, arch)


def test_get_policy_rejects_a_tag_for_another_arch() -> None:
    with pytest.raises(PolicyError, match="x86_64, not aarch64"):
        get_policy("manylinux2014_x86_64", "aarch64")


def test_get_policy_rejects_a_musl_name_for_glibc() -> None:
    with pytest.raises(PolicyError, match="musllinux_1_2"):
        get_policy("musllinux_1_2", libc="glibc")


@pytest.mark.parametrize(
    ("name", "suggested"),
    [("manylinux2015", "manylinux2014"), ("musllinux_1_2_x86-64", "musllinux_1_2_x86_64")],
)
def test_get_policy_suggests_close_names_for_unknown_ones(name: str, suggested: str) -> None:
    with pytest.raises(PolicyError, match=f"did you mean .*{suggested}"):
        get_policy(name)


def test_tags_list_name_then_aliases() -> None:
    policy = get_policy("manylinux_2_12")
    assert policy.tags("i686") == ("manylinux_2_12_i686", "manylinux2010_i686")
    assert policy.tag("i686") == "manylinux_2_12_i686"


def test_tag_rejects_an_arch_the_policy_lacks() -> None:
    with pytest.raises(PolicyError, match="loongarch64"):
        get_policy("musllinux_1_1").tag("loongarch64")


@pytest.mark.parametrize(
    ("name", "glibc", "musl"),
    [("manylinux2014", (2, 17), None), ("musllinux_1_2", None, (1, 2)), ("linux", None, None)],
)
def test_libc_versions_come_from_the_name(
    name: str, glibc: tuple[int, int] | None, musl: tuple[int, int] | None
) -> None:
    policy = get_policy(name)
    assert (policy.glibc_version, policy.musl_version) == (glibc, musl)


def test_policy_is_hashable_and_immutable() -> None:
    policy = get_policy("manylinux_2_28")
    assert {policy: 1}[get_policy("manylinux_2_28")] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.priority = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy.symbol_versions["x86_64"]["GLIBC"] = frozenset()  # type: ignore[index]
