"""The README's examples run as they are written (issue 9 docs).

The code blocks are read from README.md itself, so the README cannot drift from what is
tested: "Testing your own pipeline" is a pytest file, run by pytest in a fresh folder (the
`usercom_fake` fixture comes from the installed plugin); "Using it from a framework" is a
script, executed against its `FakeUserCom`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of one `## ` section of the README."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return BLOCK.findall(text[start : end if end != -1 else len(text)])


def test_the_testing_example_passes_under_pytest(tmp_path: Path) -> None:
    [code] = python_blocks("Testing your own pipeline")
    (tmp_path / "test_my_pipeline.py").write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_pipeline.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_the_framework_example_runs() -> None:
    [code] = python_blocks("Using it from a framework")
    exec(compile(code, f"{README}:Using it from a framework", "exec"), {"__name__": "readme"})


# --- the fault examples bite (issue 14.21) -------------------------------------------------------

FORCE_EXAMPLE = re.compile(
    r"`--force '([^']+)'`\s+answers\s+the\s+first\s+(\d+)\s+event\s+writes\s+with\s+(\d{3})"
)
FORCED_EXAMPLE = re.compile(
    r'`forced=\["([^"]+)"\]`\s+\(the\s+first\s+(\d+)\s+event\s+writes\s+answer\s+(\d{3})'
)


def statuses_of_event_writes(rule: str, writes: int) -> list[str]:
    """The outcomes of `writes` tracks delivered as `usercom send` delivers them, under `rule`."""
    import pipeline
    from pipeline.testing import FakeUserCom

    config = {"apiKey": "k" * 64, "appSubdomain": "acme"}
    with pipeline.Destination(config, transport=FakeUserCom(forced=[rule])) as destination:
        assert destination.deliver({"type": "identify", "userId": "u1"}).status == "delivered"
        return [
            destination.deliver({"type": "track", "userId": "u1", "event": f"E{n}"}).status
            for n in range(writes)
        ]


def test_the_force_example_of_the_sandbox_bites_what_send_writes() -> None:
    [(rule, count, status)] = FORCE_EXAMPLE.findall(README.read_text(encoding="utf-8"))
    assert status == "503"
    outcomes = statuses_of_event_writes(rule, int(count) + 1)
    assert outcomes == ["failed"] * int(count) + ["delivered"]


def test_the_forced_example_of_the_fake_bites_what_deliver_writes() -> None:
    [(rule, count, status)] = FORCED_EXAMPLE.findall(README.read_text(encoding="utf-8"))
    assert status == "503"
    outcomes = statuses_of_event_writes(rule, int(count) + 1)
    assert outcomes == ["failed"] * int(count) + ["delivered"]


# --- no citation of documents the repository does not ship (issue 14.23) -------------------------

CITATION = re.compile(r"\b(?:SPEC|DESIGN)\b|§")


def test_the_readme_and_makefile_cite_no_document_the_repository_lacks() -> None:
    repo = README.parent
    shipped = {path.stem.upper() for path in repo.glob("*.md")}
    for name in ("README.md", "Makefile", "pyproject.toml"):
        text = (repo / name).read_text(encoding="utf-8")
        cited = {match.group() for match in CITATION.finditer(text)} - shipped
        assert not cited, f"{name} cites {sorted(cited)}, which the repository does not hold"


# --- the --out schema and the install table match (issue 14.24) ---------------------------------


def readme_table(heading: str) -> dict[str, str]:
    """The first table after `heading`: its first cell (backticks dropped) -> the row."""
    text = README.read_text(encoding="utf-8")
    rest = text[text.index(heading) :]
    rows: dict[str, str] = {}
    for line in rest.splitlines()[1:]:
        if line.startswith("|"):
            first = line.split("|")[1].strip().strip("`")
            if first and not set(first) <= set("-: "):
                rows[first] = line
        elif rows:
            break
    return rows


def outcome_keys(tmp_path: Path, *extra: str) -> set[str]:
    """The keys of every line `usercom send --out` writes, against a sandbox in a thread."""
    import json

    from typer.testing import CliRunner

    from pipeline.cli.app import app
    from pipeline.sandbox import SandboxOptions, serve_in_thread

    examples = README.parent / "pipeline" / "examples"
    out = tmp_path / f"out{len(extra)}.jsonl"
    with serve_in_thread(SandboxOptions()) as url:
        arguments = [str(examples / "events.jsonl"), "--config", str(examples / "config.json")]
        arguments += ["--base-url", url, "--out", str(out), *extra]
        result = CliRunner().invoke(app, ["send", *arguments])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return {key for line in lines for key in line} if lines else set()


def test_the_out_schema_of_the_readme_is_what_send_writes(tmp_path: Path) -> None:
    documented = readme_table("### The `--out` file")
    assert "would" in documented
    assert "live" in documented["would"]
    always = set(documented) - {"would"}
    assert outcome_keys(tmp_path) == always
    assert outcome_keys(tmp_path, "--dry-run") == always
    assert outcome_keys(tmp_path, "--dry-run", "--live") == always | {"would"}
    assert "dry run" in documented["requests"]  # says what `requests` holds when nothing is sent


def test_the_install_table_names_every_dependency() -> None:
    import tomllib

    project = tomllib.loads((README.parent / "pyproject.toml").read_text(encoding="utf-8"))
    wanted = {
        re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()
        for requirement in [
            *project["project"]["dependencies"],
            *(r for extra in project["project"]["optional-dependencies"].values() for r in extra),
        ]
    }
    rows = readme_table("Why each dependency is there:")
    listed = {name.strip().strip("`").lower() for cell in rows for name in cell.split(",")}
    assert wanted - listed == set()
    text = README.read_text(encoding="utf-8")
    assert "later the service" not in text
