"""Every ```python block of README.md and docs/*.md runs: a page's blocks in
order in one namespace, the README's each alone (a newcomer copies one)."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Pages whose blocks a dedicated test executes *and checks* (accuracy etc.);
# running them here too would only repeat the work.
RUN_ELSEWHERE = {
    "docs/howto/flax.md": "tests/test_flax.py",
}
FILES = [ROOT / "README.md"] + [
    p for p in sorted((ROOT / "docs").glob("**/*.md"))
    if str(p.relative_to(ROOT)) not in RUN_ELSEWHERE]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks(path):
  return BLOCK.findall(path.read_text())


@pytest.mark.parametrize(
    "path", [p for p in FILES if p.exists() and _blocks(p)],
    ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_python_blocks_run(path, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  alone = path.name == "README.md"
  namespace = {"__name__": "__docs__"}
  for i, code in enumerate(_blocks(path)):
    if alone:
      namespace = {"__name__": "__docs__"}
    try:
      exec(compile(code, f"{path.name}[block {i}]", "exec"), namespace)
    except Exception as e:  # pragma: no cover - the failure message is the point
      raise AssertionError(f"{path.name} block {i} failed: {e!r}\n{code}") from e


def test_readme_has_the_two_setup_commands():
  text = (ROOT / "README.md").read_text()
  assert 'pip install ".[test]" && pytest' in text
  assert 'pip install ".[lab]" && ftrl-adam regret' in text
  ci = (ROOT / ".ci" / "run").read_text()
  assert 'pip install ".[test]" && pytest' in ci


def test_pages_run_elsewhere_really_are():
  for page, test in RUN_ELSEWHERE.items():
    assert page in (ROOT / test).read_text().replace("\\", "/") or (
        pathlib.Path(page).name in (ROOT / test).read_text()), (page, test)
