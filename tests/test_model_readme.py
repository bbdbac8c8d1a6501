"""The Python quickstart (README and the site's home page) runs as written."""

from helpers_docs import snippet


def test_quickstart_snippet_runs(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the snippet saves its result in the working folder
    code = snippet("README.md", "quickstart")
    assert snippet("index.md", "quickstart") == code, "the README's and the site's quickstart differ"
    namespace: dict = {}
    exec(compile(code, "README quickstart", "exec"), namespace)
    s = namespace["s"]
    assert s.boxes.shape == (10, 4)
    assert (s.boxes[:, 0] + s.boxes[:, 2] <= 128 + 1e-4).all()  # region "left" (centre mode): centre x <= 64
    assert "torch.Size([10, 4])" in capsys.readouterr().out
