"""Tables as users bring them: CSV (a byte-order mark, any of the delimiters, quoted fields,
.csv.gz), Parquet and Feather files, text columns, missing cells; the preprocessing fitted
on the training rows, kept in model.npz and applied by predict and by the ONNX graph."""
from __future__ import annotations

import gzip
import json

import numpy as np
import onnxruntime
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from clirunner import invoke, spec_of
from fastmlp.config import TABLE_DEFAULTS, TrainConfig, with_table_defaults
from fastmlp.errors import DataError
from fastmlp.inference import open_model
from fastmlp.owndata import load_own_data, read_table_inputs
from fastmlp.preprocess import MIN_LEVEL_ROWS, Preprocessing, fit_preprocessing
from fastmlp.sweep.supervisor import base_config
from fastmlp.tables import read_table

pytestmark = pytest.mark.usefixtures("fastmlp_env")
QUIET = ("--wandb-mode", "disabled", "--no-progress", "--no-plots")
CUTS = ("Ideal", "Premium", "Good", "Fair")


def diamonds(rows: int, seed: int = 0) -> pa.Table:
    """A table like ggplot2's diamonds: price from carat, a text cut, a depth with missing
    cells, a true/false column; the price depends on all of them."""
    rng = np.random.default_rng(seed)
    carat = rng.uniform(0.2, 2.5, rows)
    cut = rng.choice(CUTS, rows)
    depth = rng.normal(61.0, 1.5, rows)
    certified = rng.random(rows) < 0.5
    price = (3000 * carat ** 1.5 * (1 + 0.4 * (cut == "Ideal") - 0.3 * (cut == "Fair"))
             + 200 * certified + 20 * (depth - 61) + rng.normal(0, 50, rows))
    depth_cells = pa.array(np.round(depth, 1), mask=np.arange(rows) % 11 == 3)
    return pa.table({"carat": np.round(carat, 3), "cut": cut, "depth": depth_cells,
                     "certified": certified, "price": np.round(price, 1)})


def write_csv(table: pa.Table, path, delimiter=",", bom=False, compress=False):
    buffer = pa.BufferOutputStream()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(delimiter=delimiter,
                                                      quoting_style="needed"))
    text = (b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().to_pybytes()
    path.write_bytes(gzip.compress(text) if compress else text)
    return path


def config(path, **settings) -> TrainConfig:
    return TrainConfig(data=str(path), target=("price",), **settings).validated()


@pytest.mark.parametrize("name, write", [
    ("comma.csv", lambda t, p: write_csv(t, p)),
    ("semicolon.csv", lambda t, p: write_csv(t, p, ";")),
    ("tab.tsv", lambda t, p: write_csv(t, p, "\t")),
    ("pipe.csv", lambda t, p: write_csv(t, p, "|")),
    ("excel.csv", lambda t, p: write_csv(t, p, ";", bom=True)),
    ("packed.csv.gz", lambda t, p: write_csv(t, p, compress=True)),
    ("columns.parquet", lambda t, p: pq.write_table(t, p)),
    ("columns.feather", lambda t, p: feather.write_feather(t, p)),
])
def test_every_format_gives_the_same_features(name, write, tmp_path):
    table = diamonds(300)
    reference = load_own_data(config(write_csv(table, tmp_path / "reference.csv")))
    path = tmp_path / name
    write(table, path)
    loaded = load_own_data(config(path))
    assert loaded.preprocessing.feature_names == reference.preprocessing.feature_names
    np.testing.assert_allclose(loaded.x_train, reference.x_train, atol=1e-6)
    np.testing.assert_allclose(loaded.y_train, reference.y_train)
    assert loaded.task == "regression" and loaded.x_train.dtype == np.float32


def test_the_delimiter_given_wins_and_quoted_fields_keep_theirs(tmp_path):
    path = tmp_path / "quoted.csv"
    rows = "".join(f'{i},"{CUTS[i % 4]}, no. {i % 2}",{i * 2.5}\n' for i in range(60))
    path.write_text("carat,cut,price\n" + rows)
    table = read_table(path)
    assert table.delimiter == "," and table.names == ["carat", "cut", "price"]
    assert table.cells("cut")[0] == "Ideal, no. 0"
    semicolons = tmp_path / "semi.csv"
    semicolons.write_text("a;b;c,d\n" + "".join(f"{i};{i};{i},{i}\n" for i in range(10)))
    assert read_table(semicolons).names == ["a", "b", "c,d"]  # ; splits the header most
    assert read_table(semicolons, delimiter=",").names == ["a;b;c", "d"]


def test_preprocessing_is_fitted_on_the_training_rows_only(tmp_path):
    table = diamonds(400)
    settings = config(write_csv(table, tmp_path / "d.csv"))
    loaded = load_own_data(settings)
    rules = {rule.name: rule for rule in loaded.preprocessing.rules}
    # the rows the test (seeded 20 %) and validation (10 % of the rest) splits leave
    order = np.random.default_rng([settings.seed, 2]).permutation(400)
    train = np.sort(order[80:])
    fitting = train[np.sort(np.random.default_rng(settings.seed).permutation(320)[32:])]
    # the split keeps each row's features (the training rows are moved in place)
    every = loaded.preprocessing.transform(read_table(settings.data, as_read=["price"]).drop(
        ["price"]), np.dtype(np.float32))
    np.testing.assert_array_equal(loaded.x_train, every[train])
    np.testing.assert_array_equal(loaded.x_test, every[np.sort(order[:80])])
    carat = table.column("carat").to_numpy()
    assert rules["carat"].mean == pytest.approx(carat[fitting].mean(), rel=1e-6)
    assert rules["carat"].scale == pytest.approx(carat[fitting].std(), rel=1e-5)
    assert rules["carat"].mean != pytest.approx(carat.mean(), rel=1e-9)
    assert rules["certified"].kind == "boolean" and rules["certified"].scale == 1.0
    assert rules["cut"].kind == "category" and set(rules["cut"].levels) == set(CUTS)
    assert rules["depth"].indicator and not rules["carat"].indicator
    names = loaded.preprocessing.feature_names
    assert names[:5] == ["carat", "depth", "certified", "depth (missing)", "cut=" +
                         rules["cut"].levels[0]]
    # a missing depth: the training mean (0 once standardised) and its indicator set
    depth, flag = names.index("depth"), names.index("depth (missing)")
    missing = loaded.x_train[:, flag] == 1
    assert missing.any() and (loaded.x_train[missing, depth] == 0).all()
    assert Preprocessing.from_json(loaded.preprocessing.to_json()) == loaded.preprocessing


def test_a_table_of_many_pieces_gives_each_cell_its_rule(tmp_path):
    """Rows made into features a block at a time, on one thread or two, across the pieces
    a CSV is read in (one a MiB), with and without missing cells: each cell is
    (x - mean) / scale; an infinity far down names its line."""
    from fastmlp.preprocess import ROW_BLOCK

    rows = 8 * ROW_BLOCK + 123
    rng = np.random.default_rng(5)
    a, b, flag = rng.normal(3, 2, rows), rng.normal(-1, 5, rows), rng.random(rows) < 0.3
    b_cells = pa.array(b, mask=np.arange(rows) % 997 == 5)
    path = write_csv(pa.table({"a": a, "b": b_cells, "flag": flag, "y": a - b}),
                     tmp_path / "pieces.csv")
    table = read_table(path).drop(["y"])
    assert table.columns.column("a").num_chunks >= 3
    preprocessing = fit_preprocessing(table, ["a", "b", "flag"], np.arange(0, rows, 2))
    features = preprocessing.transform(table, np.dtype(np.float32), workers=2)
    np.testing.assert_array_equal(
        features, preprocessing.transform(table, np.dtype(np.float32), workers=1))
    rule_a, rule_b, rule_flag = preprocessing.rules
    f32 = np.float32
    a, b = table.columns.column("a").to_numpy(), table.columns.column("b").to_numpy()
    np.testing.assert_array_equal(features[:, 0], (a - f32(rule_a.mean)) / f32(rule_a.scale))
    filled = np.where(np.isnan(b), f32(rule_b.fill), b)
    np.testing.assert_array_equal(
        features[:, 1], (filled - f32(rule_b.mean)) / f32(rule_b.scale))
    np.testing.assert_array_equal(features[:, 2], flag)
    np.testing.assert_array_equal(features[:, 3], np.arange(rows) % 997 == 5)
    lines = path.read_text().splitlines()
    fields = lines[7 * ROW_BLOCK].split(",")  # data row 7 * ROW_BLOCK - 1 (a, b, flag, y)
    lines[7 * ROW_BLOCK] = ",".join([fields[0], "inf"] + fields[2:])
    far = tmp_path / "far.csv"
    far.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"line {7 * ROW_BLOCK + 1}, column 'b'"):
        preprocessing.transform(read_table(far).drop(["y"]), np.dtype(np.float32), workers=2)


def test_the_fit_over_many_blocks_matches_numpy_and_names_a_late_infinity(tmp_path):
    """The training rows' moments, taken a block of rows at a time and merged, are NumPy's
    mean and std of the same cells; missing cells are left out of them, and an infinity
    past the first block is named by its line."""
    from fastmlp.preprocess import FIT_BLOCK

    rows = 2 * FIT_BLOCK + 777
    rng = np.random.default_rng(11)
    gaps = rng.random(rows) < 0.01
    x = pa.array(rng.normal(1e3, 0.5, rows), mask=gaps)  # a large mean: a careless sum shows
    path = write_csv(pa.table({"x": x, "y": rng.random(rows)}), tmp_path / "blocks.csv")
    table = read_table(path).drop(["y"])
    fitting = np.sort(rng.permutation(rows)[:rows // 2])
    (rule,) = fit_preprocessing(table, ["x"], fitting).rules
    cells = table.columns.column("x").to_numpy().astype(np.float64)[fitting]
    assert rule.indicator and np.isnan(cells).any()
    assert rule.mean == pytest.approx(np.nanmean(cells), rel=1e-13) and rule.fill == rule.mean
    assert rule.scale == pytest.approx(np.nanstd(cells), rel=1e-9)
    lines = path.read_text().splitlines()
    late = FIT_BLOCK + 4321  # a data row in the second block
    lines[late + 1] = "inf," + lines[late + 1].split(",")[1]
    far = tmp_path / "late.csv"
    far.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"line {late + 2}, column 'x': an infinite number"):
        fit_preprocessing(read_table(far).drop(["y"]), ["x"], fitting)


def test_a_split_table_gets_the_features_of_its_own_rows(tmp_path):
    """With a seeded test split, the training and test features are, row for row, the
    whole table's features at those rows: the numbers, their missing-cell indicators, the
    booleans and the one-hot levels."""
    from fastmlp.preprocess import ROW_BLOCK

    rows = 3 * ROW_BLOCK + 123
    rng = np.random.default_rng(5)
    table = pa.table({
        "x": pa.array(rng.normal(size=rows), mask=rng.random(rows) < 0.05),
        "flag": pa.array(rng.random(rows) < 0.3, mask=rng.random(rows) < 0.02),
        "kind": pa.array(rng.choice(["a", "b", "c"], rows), mask=rng.random(rows) < 0.02),
        "price": np.arange(rows) + 0.5,  # each row's number, to find it after the split
    })
    path = write_csv(table, tmp_path / "split.csv")
    data = load_own_data(config(path))
    whole = data.preprocessing.transform(read_table(path).drop(["price"]), np.float32)
    assert sorted(data.preprocessing.feature_names) == sorted([
        "x", "flag", "x (missing)", "flag (missing)", "kind=a", "kind=b", "kind=c",
        "kind (missing)"])  # (the levels in the order of their counts)
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        np.testing.assert_array_equal(x, whole[y[:, 0].astype(np.int64)])
    assert len(data.x_train) + len(data.x_test) == rows


def test_rare_and_unseen_levels_go_to_other_and_an_identifier_is_refused(tmp_path):
    levels = ["a"] * 30 + ["b"] * 20 + ["rare"] * (MIN_LEVEL_ROWS - 1)
    path = tmp_path / "levels.csv"
    path.write_text("kind,x\n" + "".join(f"{k},{i}\n" for i, k in enumerate(levels)))
    table = read_table(path)
    rules = fit_preprocessing(table, ["kind"], np.arange(len(levels)))
    assert rules.feature_names == ["kind=a", "kind=b", "kind (other)"]
    new = tmp_path / "new.csv"
    new.write_text("kind,x\na,1\nrare,2\nnever seen,3\n,4\n")
    x = rules.transform(read_table(new), np.dtype(np.float32))
    np.testing.assert_array_equal(x, [[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 0]])

    ids = tmp_path / "ids.csv"
    ids.write_text("name,x,price\n" + "".join(f"row-{i},{i},{i}\n" for i in range(200)))
    with pytest.raises(DataError, match=r"column 'name' looks like an identifier \(1\d\d "
                                        r"different texts in 1\d\d rows\).*--drop name"):
        load_own_data(config(ids))
    assert load_own_data(config(ids, drop=("name",))).preprocessing.columns == ["x"]


def test_categorical_names_a_column_of_codes_and_no_preprocess_keeps_numbers(tmp_path):
    path = tmp_path / "codes.csv"
    rows = "".join(f"{i % 3 + 7},{i / 10},{i % 3 * 10 + i / 100}\n" for i in range(90))
    path.write_text("store,x,price\n" + rows)
    coded = load_own_data(config(path, categorical=("store",))).preprocessing
    names = coded.feature_names  # the levels, most frequent first
    assert names[0] == "x" and sorted(names[1:]) == ["store=7", "store=8", "store=9"]
    plain = load_own_data(config(path, preprocess=False))
    assert plain.preprocessing is None  # the numbers as they are
    assert set(np.unique(plain.x_train[:, 0])) == {7.0, 8.0, 9.0}
    assert plain.x_train[:, 1].max() > 8


def test_a_table_model_predicts_raw_rows_and_its_onnx_graph_agrees(tmp_path):
    """Train on a CSV with a text column and missing cells, then predict a new table whose
    cut was never seen and whose cells are missing, through predict and through ONNX."""
    train = write_csv(diamonds(1500, 0), tmp_path / "train.csv")
    out = tmp_path / "runs"
    outcome = invoke("train", "--data", train, "--target", "price", "-e", "30", "-sz", "32",
                     "--output-dir", out, *QUIET)
    assert outcome.code == 0, outcome.err
    run = out / "hl_2_bs_128_ac_ReLU"  # a table's defaults: 2 layers, batches of 128
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_r2"] > 0.9, summary["test_r2"]

    new = diamonds(40, 1).drop_columns(["price"])  # predict takes the rows without a target
    cut = new.column("cut").to_pylist()
    cut[0], cut[1] = "Astor", None  # a cut never seen in training, and a missing one
    new = new.set_column(1, "cut", pa.array(cut))
    pq.write_table(new, tmp_path / "new.parquet")
    outcome = invoke("predict", run / "model.npz", tmp_path / "new.parquet")
    assert outcome.code == 0, outcome.err
    predicted = np.array([float(line.split("\t")[2]) for line in outcome.out.splitlines()])
    assert len(predicted) == 40 and np.isfinite(predicted).all()

    outcome = invoke("export", run / "model.npz", tmp_path / "m.onnx")
    assert outcome.code == 0, outcome.err
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"),
                                           providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [
        ("input", "tensor(float)"), ("cut", "tensor(string)")]
    numbers = np.stack([new.column(name).to_numpy(zero_copy_only=False).astype(np.float32)
                        for name in ("carat", "depth", "certified")], axis=1)
    assert np.isnan(numbers).any()
    texts = np.array([[c if c is not None else ""] for c in cut], dtype=object)
    (values,) = session.run(["values"], {"input": numbers, "cut": texts})
    model = open_model(run / "model.npz")
    mine = model.outputs(read_table_inputs(tmp_path / "new.parquet", model)[1])
    assert np.abs(values - mine).max() / np.abs(mine).max() < 1e-5
    np.testing.assert_allclose(predicted, mine[:, 0], rtol=1e-4)

    outcome = invoke("evaluate", run / "model.npz", "--no-plot")  # the raw table again
    assert outcome.code == 0, outcome.err
    assert f"rmse {summary['test_rmse']:.4f}" in outcome.out


def test_predict_names_a_missing_column_and_text_in_numbers(tmp_path):
    train = write_csv(diamonds(300), tmp_path / "train.csv")
    out = tmp_path / "runs"
    assert invoke("train", "--data", train, "--target", "price", "-e", "1", "--output-dir",
                  out, *QUIET).code == 0
    model = out / "hl_2_bs_128_ac_ReLU" / "model.npz"
    lacking = tmp_path / "lacking.csv"
    lacking.write_text("carat,cut,certified\n1.0,Ideal,true\n")
    outcome = invoke("predict", model, lacking)
    assert outcome.code == 1 and outcome.err_lines == [
        f"error: {lacking}: no column 'depth' (the model reads 'carat', 'cut', 'depth', "
        "'certified')"]
    typo = tmp_path / "typo.csv"
    typo.write_text("carat,cut,depth,certified\n1.0,Ideal,61,true\n1.1,Good,6l.5,false\n")
    outcome = invoke("predict", model, typo)
    assert outcome.code == 1 and "line 3, column 'depth': '6l.5' in a column of numbers" in \
        outcome.err


def test_an_error_in_the_test_file_names_the_test_file_and_its_line(tmp_path):
    train = write_csv(diamonds(100), tmp_path / "train.csv")
    test = tmp_path / "test.csv"
    test.write_text("carat,cut,depth,certified,price\n1.0,Ideal,61,true,500\n"
                    "1.1,Good,60,false,\n")
    with pytest.raises(DataError, match=rf"^{test}: line 3 has an empty 'price'$"):
        load_own_data(config(train, test_data=str(test)))
    test.write_text("carat,cut,depth,certified,price\n1.0,Ideal,61,true,500\n"
                    "1.1,Good,60,false,inf\n")
    with pytest.raises(DataError, match=rf"^{test}: line 3: the test target is NaN"):
        load_own_data(config(train, test_data=str(test)))


def test_a_table_trains_with_the_table_defaults_unless_told(tmp_path):
    train = write_csv(diamonds(200), tmp_path / "train.csv")
    out = tmp_path / "runs"
    assert invoke("train", "--data", train, "--target", "price", "-e", "1", "-b", "64",
                  "--output-dir", out, *QUIET).code == 0
    (run,) = out.iterdir()
    recorded = json.loads((run / "summary.json").read_text())["config"]
    told = {"epochs": 1, "batch_size": 64}
    for name, value in TABLE_DEFAULTS.items():
        assert recorded[name] == told.get(name, value), name
    # images and .npz arrays keep the settings table's defaults
    assert with_table_defaults({"data": "x.npz", "num_layers": 3}, given=()) == {
        "data": "x.npz", "num_layers": 3}
    assert with_table_defaults({"data": "t.parquet", "num_layers": 3}, given=("num_layers",))[
        "num_layers"] == 3
    shared = base_config(spec_of("method: grid\nparameters:\n  epochs: {value: 1}\n"),
                         {"data": str(train), "target": ("price",), "batch_size": 16})
    assert (shared.num_layers, shared.batch_size, shared.lr_schedule) == (2, 16, "cosine")
