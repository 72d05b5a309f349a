"""The example of crates/python/README.md runs as written."""

import pathlib
import re


def test_the_readme_example_runs(capsys):
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    exec(compile(example, "README.md", "exec"), {})
    assert "Amélie" in capsys.readouterr().out
