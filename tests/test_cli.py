import subprocess
import sys

import pandas as pd
import pytest

from skllm import _compare, compare_methods
from skllm._cli import main


@pytest.fixture
def data_file(tmp_path, texts):
    path = tmp_path / "data.csv"
    pd.DataFrame({"review": texts[0], "sentiment": texts[1]}).to_csv(path, index=False)
    return path


def run(data, out, tiny_bert, tiny_llama, cache, *extra):
    return main(
        [
            "compare",
            str(data),
            "--text",
            "review",
            "--label",
            "sentiment",
            "--cv",
            "2",
            "--out",
            str(out),
            "--encoder",
            tiny_bert,
            "--llm",
            tiny_llama,
            "--epochs",
            "1",
            "--cache-dir",
            cache,
            *extra,
        ]
    )


def test_cli_end_to_end_and_resume(data_file, tmp_path, tiny_bert, tiny_llama, cache_dir, capsys, monkeypatch):
    out = tmp_path / "out"
    code = run(data_file, out, tiny_bert, tiny_llama, cache_dir, "--methods", "logreg", "lora", "zero-shot")
    assert code == 0
    printed = capsys.readouterr().out
    assert "same folds for every method" in printed and "best:" in printed
    table = pd.read_csv(out / "results.csv")
    assert table["method"].tolist() == ["logreg", "lora", "zero-shot"]
    assert table["error"].isna().all() and table["accuracy_mean"].between(0, 1).all()
    assert (table["trainable_params"] > 0).tolist() == [True, True, False]
    for name in ("results.md", "results.png", "best_model.joblib"):
        assert (out / name).stat().st_size > 0
    # Interrupted and run again: finished methods are read back, not redone.
    real, made = _compare.make_estimator, []

    def recording(name, **kw):
        made.append(name)
        return real(name, **kw)

    monkeypatch.setattr(_compare, "make_estimator", recording)
    assert run(data_file, out, tiny_bert, tiny_llama, cache_dir, "--methods", "logreg", "lora") == 0
    assert len(made) == 1  # only the refit of the best method on all the data


def test_a_failing_method_is_reported_and_the_others_go_on(texts, tiny_bert, tiny_llama, cache_dir):
    table = compare_methods(
        *texts,
        methods=["logreg", "few-shot"],
        cv=2,
        encoder=tiny_bert,
        llm="/no/such/model",
        cache_dir=cache_dir,
        verbose=0,
    )
    assert table.loc[0, "error"] == "" and table.loc[0, "accuracy_mean"] > 0
    assert "no such folder" in table.loc[1, "error"]


@pytest.mark.parametrize(
    "content, args, message",
    [
        ("review,sentiment\nok,pos\nbad,neg\n", ["--text", "text"], "has no column 'text' (--text)"),
        ("", [], "is empty"),
        ("review,sentiment\nok,pos\nbad,pos\n", [], "single class"),
        ("review,sentiment\n1,pos\n2,neg\n", [], "must hold text"),
    ],
)
def test_bad_input_files_get_clear_messages_and_exit_2(tmp_path, content, args, message, capsys):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    argv = ["compare", str(path), "--text", "review", "--label", "sentiment", "--out", str(tmp_path / "o")]
    if args:
        argv[3] = args[1]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "skllm", "compare", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--budget" in out.stdout
