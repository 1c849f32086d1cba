import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skllm import compare_methods
from skllm._cli import InputError, main
from skllm.exceptions import SkllmWarning


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
    assert "plan for a time budget of 10.0 min" in printed  # the default, printed before starting
    table = pd.read_csv(out / "results.csv")
    assert table["method"].tolist() == ["logreg", "lora", "zero-shot"]
    assert table["error"].isna().all() and table["accuracy_mean"].between(0, 1).all()
    assert (table["trainable_params"] > 0).tolist() == [True, True, False]
    assert (table["fit_memory_bytes"] >= 0).all() and (table["model_bytes"] > 0).all()
    assert table["trained_state_bytes"].tolist()[2] == 0  # prompting trains nothing
    assert "fit_memory" in printed and "trained_state" in printed
    for name in ("results.md", "results.png", "best_model.joblib"):
        assert (out / name).stat().st_size > 0
    # Interrupted and run again: finished methods are read back, not redone.
    assert run(data_file, out, tiny_bert, tiny_llama, cache_dir, "--methods", "logreg", "lora") == 0
    printed = capsys.readouterr().out
    assert "reused 2 of 2 row(s)" in printed
    assert pd.read_csv(out / "results.csv")["status"].tolist() == ["reused", "reused"]
    # Stopped while writing (Ctrl-C at the plot): no earlier run's model is left beside the new table.
    from skllm._compare import report

    def interrupted(table, path):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(report, "plot", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run(data_file, out, tiny_bert, tiny_llama, cache_dir, "--methods", "logreg")
    assert (out / "results.csv").exists() and not (out / "best_model.joblib").exists()
    # A run where every method fails leaves no model or plot of an earlier run beside its results.
    capsys.readouterr()
    assert run(data_file, out, tiny_bert, "no-such-org/no-such-model", cache_dir, "--methods", "zero-shot") == 1
    assert pd.read_csv(out / "results.csv")["status"].tolist() == ["failed"]
    assert "no model saved: no method finished" in capsys.readouterr().out  # why the exit status is 1
    assert not (out / "best_model.joblib").exists() and not (out / "results.png").exists()
    # The error, whatever its line breaks or bars, stays in its cell: a header, a rule and one row.
    lines = (out / "results.md").read_text().splitlines()
    assert len(lines) == 3 and lines[2].count(" | ") == lines[0].count(" | ")


def test_truncation_is_said_once_for_the_whole_comparison(
    data_file, tmp_path, tiny_bert, tiny_llama, cache_dir, capsys
):
    # Every method and fold warned on its own, at a line inside the library: 25 warnings in one run.
    from skllm.exceptions import TruncationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        code = run(
            data_file, tmp_path / "out", tiny_bert, tiny_llama, cache_dir, "--methods", "logreg", "--max-length", "4"
        )
    assert code == 0
    assert re.search(
        r"note: texts longer than --max-length 4 tokens were cut \(\d+ truncation warnings", capsys.readouterr().out
    )


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
        ("review,sentiment\n1,pos\n2,neg\n", [], "Column 'review' holds only numbers (such as 1), no texts"),
        # An unquoted comma in every text: pandas would take the first field as the index.
        ("review,sentiment\ngood film, really,pos\nbad film, truly,neg\n", [], "more fields than the header (2)"),
        ("review,review,sentiment\nok,fine,pos\nbad,awful,neg\n", [], "names the column(s) ['review'] more than"),
        ("review,sentiment\nok,pos\nbad,neg\nfine, pos\n", [], "differ only by surrounding spaces: [[' pos', 'pos']]"),
        # A stray quote opening a text: pandas would merge the lines up to the next quote into one row.
        ('review,sentiment\n"great film,pos\nbad,neg\nfun" story,pos\n', [], "lines 2 to 4: ',' expected after '\"'"),
        # Files joined with their headers: the header rows would be a class of their own.
        ("review,sentiment\nok,pos\nbad,neg\nreview,sentiment\nfine,pos\n", [], "rows [2] repeat the header"),
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


@pytest.mark.parametrize("dtype", ["Int64", "int64[pyarrow]"])
def test_a_column_of_nullable_numbers_as_texts_is_named(dtype):
    from skllm._cli import load_xy

    if dtype.endswith("[pyarrow]"):
        pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"review": pd.array([None, 7, 8], dtype=dtype), "sentiment": ["a", "b", "a"]})
    with pytest.raises(InputError, match=r"Column 'review' holds only numbers \(such as 7\)"):
        load_xy(frame, "review", "sentiment", "data.parquet")


def test_the_command_warns_of_quotes_csv_drops(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('review,sentiment\n"The Matrix" is great,pos\nbad,neg\n')
    argv = ["compare", str(path), "--text", "review", "--label", "sentiment", "--out", str(tmp_path / "o")]
    with pytest.warns(SkllmWarning, match=r"line\(s\) \[2\]: a field starts with a quote"):
        with pytest.raises(SystemExit):  # then too few texts for 5 folds: stopped before any model runs
            main(argv)


def test_an_llm_url_without_its_scheme_is_refused_before_anything_runs(tmp_path, capsys):
    path = tmp_path / "data.csv"
    path.write_text("review,sentiment\nok,pos\nbad,neg\n")
    argv = ["compare", str(path), "--text", "review", "--label", "sentiment", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as stopped:  # as argparse stops on a bad option
        main([*argv, "--llm", "openai:m@127.0.0.1:8000/v1"])
    assert stopped.value.code == 2
    assert "the URL of --llm 'openai:m@127.0.0.1:8000/v1' must be an http:// or https:// URL" in capsys.readouterr().err


def test_copies_too_few_for_the_folds_stop_the_command_before_it_runs(tmp_path, capsys):
    path = tmp_path / "data.csv"
    rows = ["a,pos", "a,pos", "a,pos", "b,pos", "c,pos", "d,neg", "e,neg", "f,neg", "g,neg", "h,neg"]
    path.write_text("review,sentiment\n" + "\n".join(rows) + "\n")  # 5 texts of 'pos', 3 distinct
    argv = ["compare", str(path), "--text", "review", "--label", "sentiment", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--cv", "5"])
    assert stopped.value.code == 2 and not (tmp_path / "o").exists()
    err = capsys.readouterr().err
    assert "--cv=5 folds need 5 distinct texts of class 'pos', but there are 3" in err and "use --cv <= 3" in err


def test_cells_are_read_as_written(tmp_path):
    from skllm._cli import read_table

    path = tmp_path / "data.csv"
    path.write_text("review,sentiment,stars,score,odd\nok,01,1,0.5,nan\nbad,1,2,1.0,1.5\nmeh,NA,3,2.25,2\n")
    frame = read_table(path)
    assert frame["sentiment"].tolist() == ["01", "1", "NA"]  # not merged into the number 1, "NA" not missing
    assert frame["stars"].tolist() == [1, 2, 3] and frame["score"].tolist() == [0.5, 1.0, 2.25]
    assert frame["odd"].tolist() == ["nan", "1.5", "2"]  # "nan" would be a missing value
    lines = tmp_path / "data.jsonl"
    lines.write_text('{"review": "ok", "sentiment": "01"}\n{"review": "bad", "sentiment": "1"}\n')
    assert read_table(lines)["sentiment"].tolist() == ["01", "1"]
    numbered = tmp_path / "numbered.jsonl"  # column names that look like numbers stay names
    numbered.write_text('{"1": "ok", "2": "pos"}\n{"1": "bad", "2": "neg"}\n')
    assert read_table(numbered)["2"].tolist() == ["pos", "neg"]
    quoted = tmp_path / "quoted.csv"  # a quote on one line, and a text longer than the csv module's field limit
    quoted.write_text(f'review,sentiment\n"The Matrix" is great,pos\n{"x" * 200_000},neg\n')
    with pytest.warns(SkllmWarning, match=r"line\(s\) \[2\]: a field starts with a quote.*whole field") as caught:
        read = read_table(quoted)
    assert read["sentiment"].tolist() == ["pos", "neg"]
    assert read["review"][0] == "The Matrix is great"  # as CSV reads it, and the warning says so
    assert len(caught) == 1
    whole = tmp_path / "whole.tsv"  # quoted fields, as pandas writes them: read back as written, no warning
    texts = ['"Great" movie', '"Awful"', 'ok "so"']
    pd.DataFrame({"review": texts, "y": [1, 0, 1]}).to_csv(whole, sep="\t", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_table(whole)["review"].tolist() == texts
    wide = tmp_path / "wide.csv"  # an integer too large for a float
    wide.write_text(f"review,n\nok,{'1' * 400}\nbad,2\n")
    assert read_table(wide)["n"].tolist() == [int("1" * 400), 2]
    marked = tmp_path / "marked.jsonl"  # a byte-order mark, as some editors write, is read past
    marked.write_bytes(b"\xef\xbb\xbf" + lines.read_bytes())
    assert read_table(marked)["sentiment"].tolist() == ["01", "1"]
    array = tmp_path / "data.json"  # an array of records under .json
    array.write_text('[{"review": "ok", "sentiment": 1}, {"review": "bad", "sentiment": 0}]')
    assert read_table(array)["sentiment"].tolist() == [1, 0]
    decimals = tmp_path / "decimals.jsonl"  # JSON numbers as printed: 0.3 is no 0.30000000000000004
    decimals.write_text("".join(f'{{"review": "r{i}", "score": {v}}}\n' for i, v in enumerate(["0.3", "0.7", "1.7"])))
    assert [str(v) for v in read_table(decimals)["score"]] == ["0.3", "0.7", "1.7"]
    tsv = tmp_path / "data.TSV.xz"  # the format from the suffix before the compression's, in any case
    frame.to_csv(tsv, sep="\t", index=False)
    assert read_table(tsv)["sentiment"].tolist() == ["01", "1", "NA"]


def test_errors_found_by_the_comparison_itself_exit_2_in_one_line(
    data_file, tmp_path, tiny_bert, tiny_llama, cache_dir, capsys
):
    assert run(data_file, tmp_path / "o", tiny_bert, tiny_llama, cache_dir, "--methods", "logreg", "logreg") == 2
    err = capsys.readouterr().err
    assert "skllm compare: error: methods lists 'logreg' twice" in err and "Traceback" not in err


def test_a_damaged_compressed_file_is_named_and_exits_2(tmp_path, capsys):
    path = tmp_path / "data.csv.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    assert main(["compare", str(path), "--text", "review", "--label", "sentiment", "--out", str(tmp_path / "o")]) == 2
    assert "data.csv.gz cannot be read as .csv (compressed)" in capsys.readouterr().err


def test_a_scheduler_address_that_is_not_one_is_refused_up_front(data_file, tmp_path, capsys):
    pytest.importorskip("distributed")
    for address in ("notanaddress", ""):
        with pytest.raises(SystemExit) as exit_:
            main(["compare", str(data_file), "--text", "review", "--label", "sentiment", "--scheduler", address])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "--scheduler must be a scheduler address such as 'tcp://host:8786'" in err and "Traceback" not in err


def test_a_list_of_labels_in_a_json_lines_file_is_named(tmp_path, capsys):
    path = tmp_path / "data.jsonl"
    path.write_text('{"review": "ok", "sentiment": ["pos"]}\n{"review": "bad", "sentiment": ["neg"]}\n')
    argv = ["compare", str(path), "--text", "review", "--label", "sentiment", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "must hold one label per row; rows [0, 1] hold ['pos']" in capsys.readouterr().err


def test_lists_of_labels_with_multilabel_are_read_as_label_sets(tmp_path):
    from skllm._cli import load_xy, read_table

    path = tmp_path / "data.jsonl"
    rows = [["sports", "politics"], ["sports"], [], ["economy "]]
    path.write_text("".join(json.dumps({"review": f"text {i}", "topics": t}) + "\n" for i, t in enumerate(rows)))
    _, indicator, names = load_xy(read_table(path), "review", "topics", path, multilabel="|")
    assert names == ["economy", "politics", "sports"]
    assert indicator.tolist() == [[0, 1, 1], [0, 0, 1], [0, 0, 0], [1, 0, 0]]
    # 1 and "1" in the lists would become one label: refused, as in single-label data.
    mixed = pd.DataFrame({"review": ["a", "b"], "topics": [[1, "1"], [2]]})
    with pytest.raises(InputError, match=r"Column 'topics' mixes label types"):
        load_xy(mixed, "review", "topics", path, multilabel="|")
    # A separator that no cell holds: said (every text would have one label).
    joined = pd.DataFrame({"review": ["a", "b", "c"], "topics": ["x|y", "y", "x"]})
    with pytest.warns(SkllmWarning, match=r"No cell of column 'topics' holds the separator ';'"):
        load_xy(joined, "review", "topics", path, multilabel=";")


def test_numbers_that_cannot_be_classes_are_kept_as_written(tmp_path):
    from skllm._cli import load_xy, read_table

    path = tmp_path / "stars.csv"
    path.write_text("review,stars,id\ngreat,4.5,98765432109876543210\nbad,1.5,2\nfine,3.0,3\n")
    frame = read_table(path)
    assert load_xy(frame, "review", "stars", path)[1] == ["4.5", "1.5", "3.0"]  # half stars: their text
    assert load_xy(frame, "review", "id", path)[1] == ["98765432109876543210", "2", "3"]  # past int64
    json_lines = pd.DataFrame({"review": ["a", "b"], "stars": np.array([0.1, 4.5], dtype=np.float32)})
    assert load_xy(json_lines, "review", "stars", "x.parquet")[1] == ["0.1", "4.5"]  # numpy's short form
    mixed = pd.DataFrame({"review": ["a", "b"], "stars": [3.5, "3.5"]})  # as JSON lines may give them
    assert load_xy(mixed, "review", "stars", "x.jsonl")[1] == [3.5, "3.5"]  # not merged: refused later


def _unwritable_folder(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root writes anywhere
        pytest.skip("this user can write in a read-only folder")
    return folder


@pytest.mark.parametrize(
    "where, message",
    [
        (lambda tmp: tmp / "data.csv", "is a file, not a folder"),
        (lambda tmp: tmp / "data.csv" / "out", "is under {tmp}/data.csv, which is a file, not a folder"),
        (_unwritable_folder, ": cannot write in this folder (Permission denied)."),
        (lambda tmp: _unwritable_folder(tmp) / "out", ": cannot create it in {tmp}/read-only (Permission denied)."),
        # Where nobody can write, root included (Linux).
        (lambda tmp: Path("/proc/self"), ": cannot write in this folder ("),
    ],
)
def test_an_out_folder_that_cannot_hold_the_results_exits_2_in_one_line(data_file, tmp_path, where, message, capsys):
    if not Path("/proc/self").is_dir() and "proc" in message:
        pytest.skip("no /proc")
    out = where(tmp_path)
    argv = ["compare", str(data_file), "--text", "review", "--label", "sentiment", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"skllm compare: error: --out {str(out)!r}")
    assert message.format(tmp=tmp_path) in err
    with pytest.raises(ValueError, match=f"out_dir {re.escape(repr(str(out)))}"):
        compare_methods(["a", "b", "c", "d"], ["x", "y", "x", "y"], cv=2, out_dir=out, verbose=0)


def test_an_out_folder_whose_results_would_overwrite_the_data_exits_2(data_file, tmp_path, capsys):
    data = tmp_path / "results.csv"  # a table kept where a run wrote it, compared again in the same folder
    data.write_bytes(data_file.read_bytes())
    argv = ["compare", str(data), "--text", "review", "--label", "sentiment", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "would write results.csv over the data file" in capsys.readouterr().err
    assert data.read_bytes() == data_file.read_bytes()


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "skllm", "compare", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--max-samples" in out.stdout


def test_rerun_on_other_data_or_settings_recomputes_the_rows(
    data_file, tmp_path, tiny_bert, tiny_llama, cache_dir, capsys
):
    out = tmp_path / "out"
    assert run(data_file, out, tiny_bert, tiny_llama, cache_dir, "--methods", "logreg", "--time-budget", "none") == 0
    first = pd.read_csv(out / "results.csv")
    capsys.readouterr()
    # Same file name, other labels: the saved row must not be reported again.
    frame = pd.read_csv(data_file)
    frame["sentiment"] = frame["sentiment"].sample(frac=1.0, random_state=1).to_numpy()
    frame.to_csv(data_file, index=False)
    assert run(data_file, out, tiny_bert, tiny_llama, cache_dir, "--methods", "logreg", "--time-budget", "none") == 0
    assert "reused 0 of 1 row(s)" in capsys.readouterr().out
    second = pd.read_csv(out / "results.csv")
    assert second.loc[0, "status"] == "computed"
    assert second.loc[0, "accuracy_mean"] != first.loc[0, "accuracy_mean"]
    # Other folds: recomputed too.
    assert run(data_file, out, tiny_bert, tiny_llama, cache_dir, "--methods", "logreg", "--cv", "3") == 0
    assert "reused 0 of 1 row(s)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-samples", "0"], "--max-samples must be an integer >= 2, got 0."),
        (["--max-samples", "-5"], "--max-samples must be an integer >= 2, got -5."),
        (["--max-samples", "3"], "--max-samples=3 is too small for --cv=2 with 2 classes"),
        (["--budget", "3"], "--max-samples=3 is too small for --cv=2 with 2 classes"),  # its former name
        (["--budget", "30", "--max-samples", "30"], "--budget is the former name of --max-samples"),
        (["--cv", "1"], "--cv must be an integer >= 2, got 1."),
        (["--cv", "40"], "--cv=40 needs at least 40 texts of every class, but class 'neg' has 24; use --cv <= 24"),
        (
            ["--cv", "20", "--max-samples", "30"],
            "--max-samples=30 is too small for --cv=20 with 2 classes: every class needs 20 texts, so use at least 40.",
        ),
        (["--epochs", "0"], "--epochs must be an integer >= 1, got 0."),
        (["--max-length", "1"], "--max-length must be an integer >= 2, got 1."),
        (["--random-state", "-1"], "--random-state must be an integer in [0, 4294967295], got -1."),
        (["--random-state", "5000000000"], "--random-state must be an integer in [0, 4294967295], got 5000000000."),
        (["--cache-dir", ""], "--cache-dir: cache_dir='' is an empty path"),
        (["--encoder", "/nonexistent/folder"], "--encoder='/nonexistent/folder' looks like a path, but no such folder"),
        (["--time-budget", "soon"], "--time-budget must be a duration such as 90s, 10m, 1h"),
        (["--time-budget", "0"], "--time-budget must be a number > 0, got 0.0."),
        (["--label-words", "pos=good,bad"], "--label-words: 'bad' is not LABEL=WORDING"),
        (
            ["--label-words", "happy=good"],
            "--label-words: 'happy' is not a label of the data; labels are ['neg', 'pos']",
        ),
    ],
)
def test_numeric_options_are_checked_up_front(data_file, tmp_path, args, message, capsys):
    argv = ["compare", str(data_file), "--text", "review", "--label", "sentiment", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--cv", "2", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "usage: skllm compare" in err and f"skllm compare: error: {message}" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()


def test_label_words_reach_the_prompting_methods_and_are_checked(texts, tiny_llama):
    from skllm._cli import parse_label_words
    from skllm._compare import make_estimator

    assert parse_label_words("pos=good, neg = bad", ["neg", "pos"]) == {"pos": "good", "neg": "bad"}
    assert parse_label_words("1=good", [0, 1]) == {1: "good"}  # matched by their text
    with pytest.raises(ValueError, match=r"--label-words names 'pos' twice \('good', 'bad'\); give one"):
        parse_label_words("pos=good,pos=bad", ["neg", "pos"])
    # A label that holds "=": split where the text before is a label; refused where two readings are.
    assert parse_label_words("a=b=negative, pos=x=y", ["a=b", "pos"]) == {"a=b": "negative", "pos": "x=y"}
    with pytest.raises(ValueError, match=r"'a=b=negative' reads as more than one LABEL=WORDING \('a', 'a=b'"):
        parse_label_words("a=b=negative", ["a", "a=b"])
    words = {"pos": "good", "neg": "bad"}
    settings = dict(encoder="x", llm=tiny_llama, epochs=1, max_length=8, cache_dir=None, random_state=0)
    for name in ("zero-shot", "few-shot"):
        assert make_estimator(name, label_words=words, **settings).label_words == words
    with pytest.raises(ValueError, match="label_words names labels that are not in y: 'happy'"):
        compare_methods(*texts, methods=["zero-shot"], llm=tiny_llama, cv=2, label_words={"happy": "x"}, verbose=0)


def test_plot_shows_quality_against_time_and_against_memory():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skllm._compare.report import figure

    table = pd.DataFrame(
        {
            "method": ["logreg", "lora", "zero-shot", "full"],
            "accuracy_mean": [0.7, 0.8, 0.6, np.nan],
            "accuracy_std": [0.01, 0.02, 0.0, np.nan],
            "fit_seconds": [1.0, 50.0, 0.1, np.nan],
            "fit_memory_bytes": [0, 300 * 2**20, 2**20, np.nan],
            "fit_gpu_memory_bytes": [0, 0, 0, np.nan],
            "trained_state_bytes": [3 * 2**10, 2 * 2**20, 0, np.nan],
            "status": ["computed", "computed", "reused", "failed"],
        }
    )
    fig = figure(table, plt)
    time_ax, memory_ax = fig.axes
    assert "fit seconds" in time_ax.get_xlabel()
    assert memory_ax.get_xlabel() == "peak training memory on the CPU, MiB (log scale)"
    labels = [text.get_text() for text in memory_ax.texts]
    # The failed row is left out.
    assert labels == ["logreg (3 KiB saved)", "lora (2.0 MiB saved)", "zero-shot (0 KiB saved)"]
    # The added memory, with nothing measurable at 1 MiB so that the log scale can show it.
    np.testing.assert_allclose(np.asarray(memory_ax.lines[0].get_xdata(), dtype=float), [1.0, 300.0, 1.0])
    plt.close(fig)
    # Without memory columns (a table written before they existed): the time panel only.
    fig = figure(table.drop(columns=["fit_memory_bytes", "fit_gpu_memory_bytes"]), plt)
    assert len(fig.axes) == 1
    plt.close(fig)


def test_the_shown_table_keeps_counts_whole_where_a_method_failed():
    from skllm._compare.report import shown_table
    from skllm._compare.rows import COLUMNS, result_table

    rows = {
        "head": {"method": "head", "accuracy_mean": 0.8, "accuracy_std": 0.01, "f1_macro_mean": 0.79,
                 "f1_macro_std": 0.02, "fit_seconds": 12.345678, "predict_seconds_per_1000": 1234.4,
                 "trainable_params": 9028, "status": "computed"},
        "lora": {"method": "lora", "status": "failed", "error": "ValueError: no"},
    }  # fmt: skip
    shown = shown_table(result_table(rows, ["head", "lora"]))
    assert set(COLUMNS) >= {"trainable_params", "fit_seconds"}
    assert shown["trainable_params"].tolist() == ["9028", "-"]
    assert shown["fit_seconds"].tolist() == ["12.3", "-"]
    assert shown["predict_seconds_per_1000"].tolist() == ["1234", "-"]
    assert "9028" in shown.to_markdown(index=False, floatfmt=".3g")


def test_labels_are_checked_before_the_folds_they_split_into(tmp_path, capsys):
    path = tmp_path / "data.jsonl"
    rows = [{"review": f"text {i}", "sentiment": [1, "1"][i % 2]} for i in range(8)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    argv = ["compare", str(path), "--text", "review", "--label", "sentiment", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "mixes label types" in err and "single class" not in err, err
