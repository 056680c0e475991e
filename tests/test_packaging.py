"""Packaging files agree with setup.cfg and the package: LICENSE, CITATION.cff, the lock files
(requirements.lock, requirements-test.lock) and the Dockerfile. Reads files only: no network,
no build, well under a second."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

import hmmclf

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
TEST_LOCK = ROOT / "requirements-test.lock"
REFRESH = ROOT / "scripts" / "refresh_lock.sh"

# The environment scripts/refresh_lock.sh compiles the locks for (CPython 3.11 on Linux):
# environment markers in setup.cfg are evaluated here, not in the interpreter running the tests.
LOCK_ENVIRONMENT = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}

try:  # a dependency of matplotlib, so normally present; the fallbacks below cover its absence
    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version
except ImportError:  # pragma: no cover
    Requirement = None

try:
    import yaml
except ImportError:  # pragma: no cover
    yaml = None


# ---------------------------------------------------------------- helpers


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    return config


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]


def _install_requires() -> list[str]:
    return _lines(_setup_cfg()["options"]["install_requires"])


def _extra(name: str) -> list[str]:
    return _lines(_setup_cfg()["options.extras_require"][name])


_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?P<spec>[^;]*?)\s*(?:;\s*(?P<marker>.*?))?\s*$"
)


def _simple_requirement(text: str) -> tuple[str, str, str]:
    match = _REQUIREMENT.match(text)
    assert match, f"cannot parse requirement {text!r}"
    return _canonical(match["name"]), match["spec"].replace(" ", ""), (match["marker"] or "").strip()


def _requirement(text: str) -> tuple[str, str, str]:
    """(canonical name, specifier, marker) of a PEP 508 requirement."""
    if Requirement is None:  # pragma: no cover
        return _simple_requirement(text)
    req = Requirement(text)
    return _canonical(req.name), str(req.specifier), str(req.marker or "")


def _release(version: str) -> tuple[int, ...]:
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    assert match, f"cannot parse version {version!r}"
    parts = [int(p) for p in match.group(0).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _simple_satisfies(version: str, specifier: str) -> bool:
    """A small PEP 440 subset (release segments only): ==, ==X.*, !=, <, <=, >, >=, ~=."""
    have = _release(version)
    for clause in filter(None, (c.strip() for c in specifier.split(","))):
        op, want = re.match(r"(~=|==|!=|<=|>=|<|>)\s*(.+)", clause).groups()
        if want.endswith(".*"):
            prefix = tuple(int(p) for p in want[:-2].split("."))
            padded = have + (0,) * len(prefix)
            same = padded[: len(prefix)] == prefix
            ok = same if op == "==" else not same
        elif op == "~=":
            wanted = tuple(int(p) for p in want.split("."))
            prefix = wanted[:-1]
            ok = have >= _release(want) and (have + (0,) * len(prefix))[: len(prefix)] == prefix
        else:
            w = _release(want)
            ok = {"==": have == w, "!=": have != w, "<": have < w, "<=": have <= w, ">": have > w, ">=": have >= w}[op]
        if not ok:
            return False
    return True


def _satisfies(version: str, specifier: str) -> bool:
    if Requirement is None:  # pragma: no cover
        return _simple_satisfies(version, specifier)
    return SpecifierSet(specifier).contains(Version(version), prereleases=True)


def _simple_marker_applies(marker: str) -> bool:
    """`VAR OP "VALUE"` clauses joined by `and` / `or` (no parentheses)."""

    def clause(text: str) -> bool:
        match = re.fullmatch(r"\s*(\w+)\s*(==|!=|<=|>=|<|>)\s*['\"]([^'\"]*)['\"]\s*", text)
        assert match, f"marker too complex for the fallback parser: {text!r}"
        var, op, value = match.groups()
        have = LOCK_ENVIRONMENT[var]
        if var.endswith("_version"):
            return _simple_satisfies(have, op + value)
        return {"==": have == value, "!=": have != value}[op]

    return any(all(clause(c) for c in part.split(" and ")) for part in marker.split(" or "))


def _marker_applies(marker: str) -> bool:
    if not marker:
        return True
    if Requirement is None:  # pragma: no cover
        return _simple_marker_applies(marker)
    return Marker(marker).evaluate(LOCK_ENVIRONMENT)


def _read_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{canonical name: (version, [sha256 hashes])} of a pip/uv lock file; asserts every
    requirement in it is an exact `name==version` pin."""
    assert path.is_file(), f"{path.name} is missing: run scripts/refresh_lock.sh"
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            logical.append(pending.strip())
        pending = ""
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in logical:
        if line.startswith("-"):  # options such as --index-url
            continue
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
        requirement = re.sub(r"--hash=\S+", "", line).strip()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;]+)(?:\s*;.*)?", requirement)
        assert match, f"{path.name}: not an exact pin: {requirement!r}"
        name = _canonical(match.group(1))
        assert name not in pins, f"{path.name}: {name} pinned twice"
        pins[name] = (match.group(2), hashes)
    assert pins, f"{path.name} pins nothing"
    return pins


def _simple_yaml_top_level(text: str) -> dict[str, str]:
    """Top-level `key: value` pairs of a YAML mapping: scalars unquoted; a key whose value is
    an indented block (a list, a mapping) gets that block's raw text."""
    found: dict[str, str] = {}
    block_key = None
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z][\w-]*):\s*(.*?)\s*$", line)
        if match:
            value = match.group(2)
            if value[:1] in "\"'" and value[-1:] == value[:1]:
                value = value[1:-1]
            found[match.group(1)] = value
            block_key = match.group(1) if not value else None
        elif block_key and line[:1].isspace() and line.strip():
            found[block_key] = (found[block_key] + "\n" + line).strip("\n")
        elif line.strip() and not line.lstrip().startswith("#"):
            block_key = None
    return found


def _citation() -> dict:
    path = ROOT / "CITATION.cff"
    assert path.is_file(), "CITATION.cff is missing"
    text = path.read_text(encoding="utf-8")
    if yaml is not None:
        data = yaml.safe_load(text)
        assert isinstance(data, dict), "CITATION.cff is not a YAML mapping"
        return data
    return _simple_yaml_top_level(text)  # pragma: no cover


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    path = ROOT / "Dockerfile"
    assert path.is_file(), "Dockerfile is missing"
    instructions, pending = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), " ".join(args.split())))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


# ---------------------------------------------------------------- LICENSE


def test_license_is_bsd_3_clause_as_setup_cfg_declares():
    assert _setup_cfg()["metadata"]["license"].strip() == "BSD-3-Clause"
    path = ROOT / "LICENSE"
    assert path.is_file(), "LICENSE is missing"
    text = " ".join(path.read_text(encoding="utf-8").split())
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026, the hmmclf developers" in text
    for clause in (
        (
            "Redistributions of source code must retain the above copyright notice, this list of "
            "conditions and the following disclaimer."
        ),
        (
            "Redistributions in binary form must reproduce the above copyright notice, this list of "
            "conditions and the following disclaimer in the documentation and/or other materials "
            "provided with the distribution."
        ),
        (
            "Neither the name of the copyright holder nor the names of its contributors may be used "
            "to endorse or promote products derived from this software without specific prior "
            "written permission."
        ),
        'THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"',
        "EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.",
    ):
        assert clause in text, f"LICENSE lacks the BSD-3-Clause text: {clause[:60]!r}..."


# ---------------------------------------------------------------- CITATION.cff


def test_citation_cff_has_the_required_fields():
    data = _citation()
    for key in ("cff-version", "message", "title", "authors", "version", "license"):
        assert data.get(key), f"CITATION.cff lacks {key!r}"
    assert str(data["cff-version"]) == "1.2.0"
    assert data["title"] == _setup_cfg()["metadata"]["name"].strip()
    assert data["license"] == _setup_cfg()["metadata"]["license"].strip()
    if yaml is None:  # pragma: no cover
        return
    assert all(isinstance(a, dict) and (a.get("name") or a.get("family-names")) for a in data["authors"])
    dois = {str(ref.get("doi", "")).lower() for ref in data.get("references", [])}
    # The two databases users report results on: ICBHI 2017 and SPRSound.
    assert {"10.1088/1361-6579/ab03ea", "10.1109/tbcas.2022.3204910"} <= dois


def test_citation_version_is_the_package_version():
    assert str(_citation()["version"]) == hmmclf.__version__, (
        "CITATION.cff `version` and hmmclf.__version__ differ: bump both together"
    )


# ---------------------------------------------------------------- lock files


def test_runtime_lock_pins_every_install_requires_within_its_range():
    pins = _read_lock(LOCK)
    checked = 0
    for text in _install_requires():
        name, specifier, marker = _requirement(text)
        if not _marker_applies(marker):  # e.g. tomli, for Python < 3.11 only
            continue
        assert name in pins, f"{name} (setup.cfg install_requires) is not pinned in {LOCK.name}"
        version = pins[name][0]
        assert _satisfies(version, specifier), (
            f"{LOCK.name} pins {name}=={version}, outside setup.cfg's {text!r}: run scripts/refresh_lock.sh"
        )
        checked += 1
    assert checked >= 5


def test_lock_files_carry_hashes_for_every_pin():
    # The Dockerfile installs with --require-hashes, which refuses a pin without a hash.
    for path in (LOCK, TEST_LOCK):
        for name, (version, hashes) in _read_lock(path).items():
            assert hashes, f"{path.name}: {name}=={version} has no --hash"


def test_test_lock_holds_the_runtime_pins_and_the_test_extra():
    runtime = _read_lock(LOCK)
    full = _read_lock(TEST_LOCK)
    for name, (version, _) in runtime.items():
        assert name in full, f"{TEST_LOCK.name} lacks {name}, which {LOCK.name} pins"
        assert full[name][0] == version, f"{name}: {TEST_LOCK.name} pins {full[name][0]}, {LOCK.name} pins {version}"
    for text in _extra("test"):
        name, specifier, marker = _requirement(text)
        if not _marker_applies(marker):
            continue
        assert name in full, f"{name} (setup.cfg test extra) is not pinned in {TEST_LOCK.name}"
        assert _satisfies(full[name][0], specifier), f"{TEST_LOCK.name}: {name}=={full[name][0]} outside {text!r}"


def test_locks_are_compiled_for_the_python_of_the_docker_image():
    script = REFRESH.read_text(encoding="utf-8")
    target = re.findall(r"--python-version[ =](\d+\.\d+)", script)
    assert target and set(target) == {LOCK_ENVIRONMENT["python_version"]}
    base = [args for keyword, args in _dockerfile() if keyword == "FROM"]
    assert base, "Dockerfile has no FROM"
    match = re.match(r"(?:docker\.io/)?(?:library/)?python:(\d+\.\d+)", base[-1])
    assert match, f"Dockerfile's final image is not a python image: {base[-1]!r}"
    assert match.group(1) == LOCK_ENVIRONMENT["python_version"], (
        f"Dockerfile uses Python {match.group(1)}, the locks are compiled for {LOCK_ENVIRONMENT['python_version']}"
    )
    requires = _setup_cfg()["options"]["python_requires"].strip()
    assert _satisfies(LOCK_ENVIRONMENT["python_version"] + ".0", requires)


@pytest.mark.skipif(Requirement is None, reason="packaging is not installed")
def test_fallback_parsers_agree_with_packaging():
    for text in _install_requires() + _extra("test") + _extra("dask"):
        name, specifier, marker = _requirement(text)
        simple = _simple_requirement(text)
        assert simple[0] == name
        assert SpecifierSet(simple[1]) == SpecifierSet(specifier), text
        if marker:
            assert _simple_marker_applies(simple[2]) == _marker_applies(marker), text
    for path in (LOCK, TEST_LOCK):
        for version, _ in _read_lock(path).values():
            for spec in (f"=={version}", f">={version}", f"<{version}", "<1", ">=1.0,<99", "~=1.2"):
                assert _simple_satisfies(version, spec) == _satisfies(version, spec), (version, spec)


@pytest.mark.skipif(yaml is None, reason="PyYAML is not installed")
def test_fallback_yaml_reader_agrees_with_pyyaml():
    text = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    simple, full = _simple_yaml_top_level(text), yaml.safe_load(text)
    assert set(simple) == set(full)
    for key in ("cff-version", "title", "version", "license"):
        assert simple[key] == str(full[key])


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_installs_from_the_lock_then_the_package_without_deps():
    instructions = _dockerfile()
    runs = [(i, args) for i, (keyword, args) in enumerate(instructions) if keyword == "RUN"]
    copies = [args for keyword, args in instructions if keyword in ("COPY", "ADD")]
    assert any("requirements.lock" in args.split() for args in copies), "Dockerfile does not COPY requirements.lock"
    lock_installs = [i for i, args in runs if re.search(r"pip install\b[^&;|]*\s-r\s+\S*requirements\.lock\b", args)]
    assert lock_installs, "Dockerfile does not `pip install -r requirements.lock`"
    assert any("--require-hashes" in args for i, args in runs if i in lock_installs)
    package_installs = [i for i, args in runs if re.search(r"pip install\s+--no-deps\s+\S", args)]
    assert package_installs, "Dockerfile does not install hmmclf with `pip install --no-deps`"
    assert min(lock_installs) <= min(package_installs), "the package is installed before the locked dependencies"
    # The build backend is pinned too: no build isolation, after a hash-checked install of the build lock.
    assert all("--no-build-isolation" in args for i, args in runs if i in package_installs)
    build_lock = [i for i, args in runs if re.search(r"--require-hashes -r \S*requirements-build\.lock\b", args)]
    assert build_lock and min(build_lock) <= min(package_installs), "the build backend is not installed from its lock"
    # Nothing else may pull in unpinned packages.
    for _, args in runs:
        for command in re.findall(r"pip install\b[^&;|]*", args):
            assert "-r" in command.split() or "--no-deps" in command.split(), f"unpinned install: {command!r}"
    # The files copied into the build context exist (and so are not lost to a typo).
    for args in copies:
        sources = args.split()[:-1]
        for source in (s for s in sources if not s.startswith("--")):
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()}
    for needed in ("requirements.lock", "hmmclf", "setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        assert needed not in ignored, f".dockerignore excludes {needed}, which the build needs"


def test_dockerfile_runs_hmmclf_as_a_non_root_user_any_uid_can_replace():
    instructions = _dockerfile()
    users = [(i, args) for i, (keyword, args) in enumerate(instructions) if keyword == "USER"]
    assert users, "Dockerfile sets no USER: the container would run as root"
    last_index, last_user = users[-1]
    assert last_user.split(":")[0] not in ("root", "0"), f"Dockerfile's final USER is root: {last_user!r}"
    entrypoints = [i for i, (keyword, _) in enumerate(instructions) if keyword == "ENTRYPOINT"]
    assert entrypoints and last_index < entrypoints[-1]
    assert instructions[entrypoints[-1]][1] == '["hmmclf"]'
    env = " ".join(args for keyword, args in instructions if keyword == "ENV")
    # An arbitrary `docker run --user UID:GID` has no home: matplotlib needs a writable config dir.
    assert re.search(r"\bMPLBACKEND=Agg\b", env)
    assert re.search(r"\bMPLCONFIGDIR=/tmp\b", env) or re.search(r"\bMPLCONFIGDIR=/tmp/", env)
    assert re.search(r"\bHOME=/tmp\b", env)
    workdirs = [args for keyword, args in instructions if keyword == "WORKDIR"]
    assert workdirs and workdirs[-1] == "/data"
