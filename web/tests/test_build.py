"""The web client's sources type-check (tsc --noEmit) and build into content-hashed files."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

WEB = Path(__file__).resolve().parents[1]


def test_the_sources_type_check() -> None:
    result = subprocess.run([str(WEB / "node_modules/.bin/tsc"), "--noEmit", "-p", str(WEB)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_build_names_every_asset_by_its_content_and_the_page_points_at_them(tmp_path: Path) -> None:
    def build(out: Path) -> dict[str, bytes]:
        subprocess.run(["node", str(WEB / "build.mjs"), str(out)], check=True, timeout=120)
        return {str(path.relative_to(out)): path.read_bytes() for path in out.rglob("*") if path.is_file()}

    first, second = build(tmp_path / "one"), build(tmp_path / "two")
    assert first == second  # the same sources give the same names and bytes
    assets = [name for name in first if name != "index.html"]
    assert {Path(name).suffix for name in assets} == {".js", ".css", ".svg"}
    assert all(re.fullmatch(r"assets/[a-z]+-[A-Z0-9]{8}\.(js|css|svg)", name) for name in assets)
    page = first["index.html"].decode()
    assert sorted(re.findall(r'(?:href|src)="/(assets/[^"]+)"', page)) == sorted(assets)
    assert "<script>" not in page and "style=" not in page  # nothing inline: the CSP allows none


def test_a_changed_source_gets_a_new_name(tmp_path: Path) -> None:
    source = tmp_path / "web"
    subprocess.run(["cp", "-r", str(WEB / "src"), str(WEB / "index.html"), str(WEB / "build.mjs"), str(WEB / "package.json"), str(tmp_path)], check=True)
    source.mkdir()
    for name in ("src", "index.html", "build.mjs", "package.json"):
        (tmp_path / name).rename(source / name)
    (source / "node_modules").symlink_to(WEB / "node_modules")
    names = []
    for text in ("", "\nbody { margin: 1px; }\n"):
        (source / "src/style.css").write_text((WEB / "src/style.css").read_text() + text)
        out = tmp_path / f"out{len(names)}"
        subprocess.run(["node", str(source / "build.mjs"), str(out)], check=True, timeout=120)
        names.append(sorted(str(path.relative_to(out)) for path in out.rglob("*.css")))
    assert names[0] != names[1]
