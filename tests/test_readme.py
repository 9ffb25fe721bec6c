"""The front page and the handbook cannot rot: README.md's commands run as written after `make`
(servers with --help), its Python runs on a real X-ray, every `lungseg` command in docs/ parses
with the real CLI, every `make` target and script exists, every link and anchor resolves, and the
documented rules, warnings, outputs and manifest columns are those of lungseg/rules.json.
"""
from __future__ import annotations

import csv
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, requires_data, val_images

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "web" / "README.md"]
VENV = Path(sys.prefix)                      # the environment `make` built (.venv), running this test
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*$", re.M)
SHELLS = {"sh", "bash", "shell", "console"}
LUNGSEG = ("lungseg", ".venv/bin/lungseg")
PYTHONS = ("python", "python3", ".venv/bin/python")
TOOLS = {"ray", "npm"}                       # other programs the pages tell users to run


def blocks(page: Path, languages) -> list[str]:
    return [code for lang, code in BLOCK.findall(page.read_text()) if lang in languages]


def prose(page: Path) -> str:
    """The page without its code blocks (where links and headings live)."""
    return BLOCK.sub("", page.read_text())


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats -1, -2."""
    seen: dict[str, int] = {}
    for heading in HEADING.findall(prose(page)):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def commands(code: str) -> list[tuple[list[str], Path]]:
    """Each simple command of a shell block as (words, working folder relative to the clone):
    continuation lines joined, comments dropped, `VAR=value` expanded, `cd` followed."""
    found, variables = [], {}
    for line in code.replace("\\\n", " ").splitlines():
        line = re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), m.group(0)), line)
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        cwd, words = ROOT, []
        for token in [*lexer, ";"]:
            if token not in (";", "&&", "||"):
                words.append(token)
                continue
            assignments = [w for w in words if re.match(r"^[A-Za-z_]\w*=", w)]
            if words and len(assignments) == len(words):
                variables.update(w.split("=", 1) for w in words)
            elif words and words[0] == "cd":
                cwd = cwd / words[1]
                assert cwd.is_dir(), f"`cd {words[1]}`: no such folder"
            elif words:
                found.append((words[len(assignments):], cwd))
            words = []
    return found


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w./-]+)\s*:(?!=)", (ROOT / "Makefile").read_text(), re.M))


def check_command(words: list[str], cwd: Path) -> None:
    """Fail unless ``words`` names a real make target, lungseg command, file or module."""
    from lungseg.cli import parser

    program, args = words[0], words[1:]
    if program == "make":
        missing = set(args) - make_targets()
        assert not missing, f"`make {' '.join(args)}`: no such Makefile target {sorted(missing)}"
    elif program == "source":
        assert (cwd / args[0]).is_file(), f"`source {args[0]}`: no such file"
    elif program in LUNGSEG or (program in PYTHONS and args[:2] == ["-m", "lungseg"]):
        args = args[2:] if program in PYTHONS else args
        try:
            parser().parse_args(args)
        except SystemExit as stop:
            assert stop.code == 0 and {"-h", "--help"} & set(args), f"`lungseg {' '.join(args)}` does not parse"
    elif program in PYTHONS and args[0] == "-m":
        if args[1] != "venv":
            assert importlib.util.find_spec(args[1]), f"`python -m {args[1]}`: no such module"
    elif program in PYTHONS and args[0] == "-c":
        compile(args[1], "<python -c>", "exec")
    elif program in PYTHONS:
        assert (cwd / args[0]).is_file(), f"`python {args[0]}`: no such script"
    elif program.endswith("/pip") or program == "pip":
        for flag, value in zip(args, args[1:]):
            assert flag not in ("-r", "-c") or (cwd / value).is_file(), f"pip {flag} {value}: no such file"
    elif program == "node":
        assert (cwd / args[0]).is_file(), f"`node {args[0]}`: no such script"
    else:
        assert program in TOOLS, f"a command nobody checks: `{' '.join(words)}` (teach test_readme.py)"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page):
    """Every relative link and image of the page leads to a file, and its #anchor to a heading."""
    broken = []
    for target in LINK.findall(prose(page)):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES[:-1], ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_are_real(page):
    """Every command in the page's shell blocks names a real make target, script or module, and
    every `lungseg` command parses with the CLI's own parser (its options exist, required ones
    are given)."""
    found = [c for code in blocks(page, SHELLS) for c in commands(code)]
    assert found or page.name not in ("README.md", "cli.md"), "no commands found: is the parser broken?"
    for words, cwd in found:
        check_command(words, cwd)


def test_readme_is_short_and_keeps_its_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 160
    assert "make run " in text and "make test " in text


def test_readme_scripts_answer_help():
    """The README's scripts (servers: not started here) answer --help."""
    scripts = [(w, cwd) for code in blocks(README, SHELLS) for w, cwd in commands(code)
               if w[0] in PYTHONS and w[1].endswith(".py")]
    assert scripts
    for words, cwd in scripts:
        done = subprocess.run([sys.executable, words[1], "--help"], cwd=cwd, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0 and "usage" in done.stdout, done.stderr


def table(page: Path, first: str) -> dict[str, str]:
    """The page's table whose header starts with ``first``: first cell -> the rest of the row."""
    rows = re.findall(rf"^\| {first} \|.*?\n((?:\|.*\n)+)", page.read_text(), re.M)
    assert rows, f"no table headed `{first}` in {page.name}"
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in rows[0].splitlines()[1:]]
    return {c[0]: " | ".join(c[1:]) for c in cells}


def test_documented_rules_are_rules_json():
    """The README's rules, the warning codes and the manifest columns in docs/ are those of
    lungseg/rules.json."""
    from lungseg import rules

    accepts = table(README, "rule")
    assert accepts["formats"].startswith(rules.FORMATS)
    assert accepts["largest image"].startswith(f"{rules.MAX_PIXELS / 1e6:g} megapixels")
    assert accepts["smallest image"].startswith(f"{rules.MIN_SIDE} pixels")
    assert f"under {rules.RULES['checks']['small_side_below']}" in accepts["smallest image"]
    assert accepts["largest file"] == f"{rules.MAX_FILE_BYTES / 2**20:g} MB"
    assert accepts["overlay"] == f"cyan {tuple(rules.OVERLAY_RGB)} at {rules.OVERLAY_OPACITY:.0%} opacity"

    codes = {c for row in table(ROOT / "docs" / "quality.md", "code") for c in re.findall(r"`(\w+)`", row)}
    assert codes == set(rules.RULES["warnings"])
    columns = {c for row in table(ROOT / "docs" / "cli.md", "column") for c in re.findall(r"`(\w+)`", row)}
    assert columns == set(rules.MANIFEST_COLUMNS)
    outputs = {c for row in table(ROOT / "docs" / "cli.md", "file") for c in re.findall(r"`NAME(\.[\w.]+)`", row)}
    assert outputs == {v for k, v in rules.OUTPUTS.items() if k != "manifest"}


@requires_data
def test_readme_command_line_runs_as_written(tmp_path):
    """The README's command-line block, run as written (bash, `set -e`) in a folder with `.venv`
    and real X-rays in `scans/`: the masks and manifest it promises exist, and every option it
    names is one `lungseg` offers."""
    from lungseg import rules

    (code,) = [c for c in blocks(README, SHELLS) if "lungseg predict" in c]
    (tmp_path / ".venv").symlink_to(VENV)
    (tmp_path / "scans").mkdir()
    xrays = val_images(2)
    for xray in xrays:
        shutil.copy(xray, tmp_path / "scans" / xray.name)
    done = subprocess.run(["bash", "-e", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "masks"
    for xray in xrays:
        for kind in ("mask", "overlay"):
            assert (out / (xray.name + rules.OUTPUTS[kind])).is_file()
            for definition in rules.DEFINITIONS:     # the --definition both line
                assert (tmp_path / "both" / (xray.name + rules.output_name(kind, definition))).is_file()
    with (out / rules.OUTPUTS["manifest"]).open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == rules.MANIFEST_COLUMNS
    assert sorted(Path(r["input"]).name for r in rows) == sorted(x.name for x in xrays)
    assert all(r["status"] == "ok" for r in rows), rows
    missing = set(re.findall(r"--[a-z][a-z-]+", code)) - set(re.findall(r"--[a-z][a-z-]+", done.stdout))
    assert not missing, f"the README names options `lungseg predict --help` does not list: {missing}"


@requires_data
@pytest.mark.parametrize("page", [README, ROOT / "docs" / "architecture.md"], ids=lambda p: p.name)
def test_python_runs_on_a_real_xray(page, tmp_path, monkeypatch, capsys):
    """The page's Python, run as written where the files it names are a real Val X-ray (a PNG,
    and a DICOM made from it with a chest-sized pixel spacing)."""
    import numpy as np
    from PIL import Image

    import dicoms

    (code,) = blocks(page, {"python"})
    xray = val_images(1, "Normal")[0]
    grey = np.asarray(Image.open(xray).convert("L"))
    for name, kind in set(re.findall(r"""["']([\w.-]+\.(png|dcm))["']""", code)):
        if kind == "png":
            shutil.copy(xray, tmp_path / name)
        else:
            ds = dicoms.dataset(grey.astype(np.uint16) * 16, PixelSpacing=[1.4, 1.4])
            (tmp_path / name).write_bytes(dicoms.encode(ds))
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    exec(compile(code, str(page), "exec"), namespace)
    result = namespace["result"]
    assert result.mask.shape == grey.shape and set(np.unique(result.mask)) <= {0, 1}
    assert 0.9 < result.quality <= 1 and 0.1 < result.areas["lung_fraction"] < 0.6
    assert capsys.readouterr().out.strip()
