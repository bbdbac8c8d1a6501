"""The README's Python quickstart runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_snippet_runs(capsys):
    text = README.read_text()
    section = text.split("<!-- section:quickstart -->", 1)[1].split("<!-- /section:quickstart -->", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "no python block in the quickstart section"
    namespace: dict = {}
    exec(compile(code.group(1), "README quickstart", "exec"), namespace)
    s = namespace["s"]
    assert s.boxes.shape == (10, 4)
    assert (s.boxes[:, 0] + s.boxes[:, 2] <= 128 + 1e-4).all()  # region "left" (centre mode): centre x <= 64
    assert "torch.Size([10, 4])" in capsys.readouterr().out
