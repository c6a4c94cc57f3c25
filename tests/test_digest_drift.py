"""The drift digest from configuration to text: digests.yaml, CSV / Parquet / SQL sources, findings, CLI."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from bot.cli import main
from bot.digests.cli import SOURCE_FAILED
from bot.digests.config import DigestConfigError, Source, drift_limits, load_digests
from bot.digests.drift import Thresholds, dataset_drift
from bot.digests.drift_digest import render_text, run_drift
from bot.digests.parquet import read_columns
from bot.digests.sources import SourceError, load
from tests.conftest import ROOT
from tests.test_docs import docs_section

AT = dt.date(2026, 11, 5)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "digests.yaml"
    path.write_text(text)
    return path


# ---- configuration


def test_the_starter_configuration_loads() -> None:
    """digests.yaml in the repository is valid: one drift digest on weekday mornings in Berlin."""
    config = load_digests(ROOT / "digests.yaml")
    digest = config.digests["model-drift"]
    assert digest.kind == "drift" and str(config.zone(digest)) == "Europe/Berlin"
    assert digest.monitors[0].prediction == "score"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("digests:\n  d:\n    kind: drift\n    schedul: x\n", "line 4: digests.d: unknown field 'schedul'"),
        (
            "digests:\n  d:\n    kind: drift\n    schedule: every day\n    channel: C1\n",
            "not a cron expression",
        ),
        ("timezone: Mars/Olympus\n", "line 1: timezone: unknown timezone 'Mars/Olympus'"),
        ("digests:\n  d: {kind: drift, schedule: '0 8 * * *', channel: C1}\n", "needs at least one monitor"),
        (
            "digests:\n  d:\n    kind: drift\n    schedule: '0 8 * * *'\n    channel: C1\n    monitors:\n"
            "      - {model: m, numeric: [a], reference: {sql: 'select 1'}, current: {csv: x.csv}}\n",
            "a sql source needs url",
        ),
    ],
)
def test_configuration_errors_name_the_file_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    """Every problem is reported with where it is and what to do."""
    with pytest.raises(DigestConfigError) as raised:
        load_digests(_write(tmp_path, text))
    assert message in str(raised.value) and str(tmp_path / "digests.yaml") in str(raised.value)


def test_a_missing_configuration_file_says_which_setting_names_it(tmp_path: Path) -> None:
    """No file: the error names the path and STEWARD_DIGESTS_FILE."""
    with pytest.raises(DigestConfigError, match="STEWARD_DIGESTS_FILE"):
        load_digests(tmp_path / "nope.yaml")


# ---- sources


def test_csv_windows_skip_files_dated_outside_them(demo: Path) -> None:
    """A broken file dated outside the window is never opened; rows come from the window's days only."""
    folder = demo / ".steward-demo" / "predictions"
    (folder / "2026-09-01.csv").write_text("not,a,valid\nfile")
    try:
        source = Source.model_validate({"csv": ".steward-demo/predictions/*.csv", "last_days": 7})
        columns = load(source, {"day": "categorical", "amount": "numeric"}, "day", AT, demo)
    finally:
        (folder / "2026-09-01.csv").unlink()
    assert set(columns["day"]) == {f"2026-10-{d}" for d in range(29, 32)} | {
        f"2026-11-0{d}" for d in range(1, 5)
    }
    assert len(columns["amount"]) == 7 * 200


def test_bad_values_and_missing_columns_name_the_file_and_line(tmp_path: Path) -> None:
    """A value that is not a number, or a column that is not there, is an error with its place."""
    (tmp_path / "p.csv").write_text("day,amount\n2026-11-01,12.5\n2026-11-01,twelve\n")
    source = Source.model_validate({"csv": "p.csv"})
    with pytest.raises(SourceError, match=r"p\.csv, line 3: column 'amount' holds 'twelve'"):
        load(source, {"amount": "numeric"}, None, AT, tmp_path)
    with pytest.raises(SourceError, match=r"no column 'score' \(it has: amount, day\)"):
        load(source, {"score": "numeric"}, None, AT, tmp_path)


def test_parquet_and_sql_sources_give_the_same_columns(tmp_path: Path) -> None:
    """The same rows from a Parquet file and from a SQL query (SQLite), with the window in SQL."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {
        "day": ["2026-11-01", "2026-11-02", "2026-11-03"],
        "amount": [1.0, None, 3.0],
        "country": ["DE", "FR", None],
    }
    pq.write_table(pa.table(rows), tmp_path / "p.parquet")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE p (day TEXT, amount REAL, country TEXT)"))
        connection.execute(
            sa.text("INSERT INTO p VALUES (:day, :amount, :country)"),
            [dict(zip(rows, r, strict=True)) for r in zip(*rows.values(), strict=True)],
        )
    engine.dispose()
    kinds = {"amount": "numeric", "country": "categorical"}
    window = {"from": "2026-11-02", "to": "2026-11-03"}
    parquet = load(Source.model_validate({"parquet": "p.parquet", **window}), kinds, "day", AT, tmp_path)  # type: ignore[arg-type]
    sql = Source.model_validate(
        {"sql": "SELECT * FROM p WHERE day >= :start", "url": f"sqlite:///{tmp_path / 'p.db'}", **window}
    )
    queried = load(sql, kinds, "day", AT, tmp_path)  # type: ignore[arg-type]
    for columns in (parquet, queried):
        assert list(columns["country"]) == ["FR", None]
        assert columns["amount"][1] == 3.0 and columns["amount"][0] != columns["amount"][0]  # NaN


def test_parquet_read_by_column_means_what_csv_read_by_row_means(tmp_path: Path) -> None:
    """Text numbers with blanks, integer categories, timestamps as dates: the same columns as the CSV."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    days = [dt.datetime(2026, 11, d, 12, tzinfo=dt.UTC) for d in (1, 2, 3, 4)]
    pq.write_table(
        pa.table(
            {
                "day": days,
                "amount": ["1.5", " ", "3", "-2e1"],
                "score": pa.array([0.5, None, 0.25, 1.0]),
                "plan": pa.array([7, 12, None, 12], pa.int64()),
                "country": ["DE", "", None, "FR"],
            }
        ),
        tmp_path / "p.parquet",
    )
    (tmp_path / "p.csv").write_text(
        "day,amount,score,plan,country\n"
        "2026-11-01,1.5,0.5,7,DE\n2026-11-02, ,,12,\n2026-11-03,3,0.25,,\n2026-11-04,-2e1,1.0,12,FR\n"
    )
    kinds = {"amount": "numeric", "score": "numeric", "plan": "categorical", "country": "categorical"}
    window = {"from": "2026-11-02", "to": "2026-11-04"}
    by_column = load(Source.model_validate({"parquet": "p.parquet", **window}), kinds, "day", AT, tmp_path)  # type: ignore[arg-type]
    by_row = load(Source.model_validate({"csv": "p.csv", **window}), kinds, "day", AT, tmp_path)  # type: ignore[arg-type]
    for name in kinds:
        assert repr(list(by_column[name])) == repr(list(by_row[name])), name
    assert list(by_column["plan"]) == ["12", None, "12"]
    # and it was read by column, not handed to the row reader
    read_columns(tmp_path / "p.parquet", kinds, "day", dt.date(2026, 11, 2), dt.date(2026, 11, 4))  # type: ignore[arg-type]


def test_a_bad_parquet_value_names_the_file_row_and_column(tmp_path: Path) -> None:
    """The columnar reader gives way to the row reader, which says where the value is."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"day": ["2026-11-01", "2026-11-02"], "amount": ["1", "twelve"]}), tmp_path / "p.parquet"
    )
    with pytest.raises(
        SourceError, match=r"p.parquet, row 2: column 'amount' holds 'twelve', which is not a number"
    ):
        load(Source.model_validate({"parquet": "p.parquet"}), {"amount": "numeric"}, "day", AT, tmp_path)


# ---- the digest


def test_the_demo_drift_is_reported_with_its_runbook(demo: Path) -> None:
    """Amount, the new category and the prediction drift; the text ranks and explains them."""
    config = load_digests(demo / "digests.yaml")
    results = run_drift(config.digests["model-drift"], AT, demo)
    (result,) = results
    assert result.drift is not None and result.drift.level == "drift"
    drifted = [f.feature for f in result.drift.drifted]
    assert {"amount", "merchant_category", "score"} <= set(drifted)
    text = render_text("model-drift", results, AT)
    assert "fraud-scorer: DRIFT" in text and "new: crypto_exchange" in text
    assert "current: .steward-demo/predictions/*.csv, 2026-10-29 to 2026-11-04" in text


def test_a_failing_source_is_reported_not_skipped(demo: Path) -> None:
    """A window with no files: the model is listed as not checked, with the source and the reason."""
    config = load_digests(demo / "digests.yaml")
    results = run_drift(config.digests["model-drift"], dt.date(2027, 6, 1), demo)
    text = render_text("model-drift", results, dt.date(2027, 6, 1))
    assert (
        "fraud-scorer: NOT CHECKED: current: no rows in .steward-demo/predictions/*.csv, 2027-05-25" in text
    )


def test_a_quiet_period_is_one_line_or_nothing(demo: Path) -> None:
    """Reference and current both before the drift: one "all quiet" line, or nothing when configured."""
    config = load_digests(demo / "digests.yaml")
    digest = config.digests["model-drift"]
    before = dt.date(2026, 10, 22)  # the current window is 10-15 .. 10-21
    text = render_text("model-drift", run_drift(digest, before, demo), before)
    assert text == "model-drift (2026-10-22): all quiet: no drift in 1 model(s)."
    assert render_text("model-drift", run_drift(digest, before, demo), before, quiet="skip") == ""


def test_steward_digest_run_prints_the_digest(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI renders it (drift is a finding: exit 0); a monitor that could not be checked is printed
    and exits SOURCE_FAILED; an unknown name lists the configured ones (exit 1)."""
    monkeypatch.setenv("STEWARD_DIGESTS_FILE", str(demo / "digests.yaml"))
    monkeypatch.setenv("STEWARD_DATA_DIR", str(tmp_path / "data"))
    assert main(["digest", "run", "model-drift", "--at", "2026-11-05"]) == 0
    assert "fraud-scorer: DRIFT" in capsys.readouterr().out
    assert main(["digest", "run", "model-drift", "--at", "2027-05-26"]) == SOURCE_FAILED
    assert "fraud-scorer: NOT CHECKED: current: no rows in" in capsys.readouterr().out
    assert main(["digest", "run", "weekly", "--at", "2026-11-05"]) == 1
    assert (
        "no digest named 'weekly' (configured: governance, incidents, model-drift)" in capsys.readouterr().err
    )


# ---- issue 15: a BOM, unmeasurable columns, methods and thresholds in digests.yaml


def test_a_csv_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a BOM: the first column is still `amount`."""
    (tmp_path / "p.csv").write_text("amount,country\n12.5,DE\n7,FR\n", encoding="utf-8-sig")
    assert (tmp_path / "p.csv").read_bytes().startswith(b"\xef\xbb\xbfamount")
    columns = load(
        Source.model_validate({"csv": "p.csv"}),
        {"amount": "numeric", "country": "categorical"},
        None,
        AT,
        tmp_path,
    )
    assert list(columns["amount"]) == [12.5, 7.0] and list(columns["country"]) == ["DE", "FR"]


def _monitor_yaml(drift: str = "", columns: str = "", categorical: str = "[country]") -> str:
    return (
        "digests:\n  d:\n    kind: drift\n    schedule: '0 8 * * *'\n    channel: C1\n"
        f"{drift}"
        "    monitors:\n      - model: m\n"
        "        reference: {csv: ref.csv}\n        current: {csv: cur.csv}\n"
        f"        numeric: [amount]\n        categorical: {categorical}\n{columns}"
    )


def test_a_column_without_values_makes_the_digest_say_not_checked(tmp_path: Path) -> None:
    """A reference column all blank: "not checked: no values", never "all quiet"; the rest is measured."""
    (tmp_path / "ref.csv").write_text("amount,country\n" + "".join(f"{i},\n" for i in range(100)))
    (tmp_path / "cur.csv").write_text("amount,country\n" + "".join(f"{i},DE\n" for i in range(100)))
    digest = load_digests(_write(tmp_path, _monitor_yaml())).digests["d"]
    results = run_drift(digest, AT, tmp_path)
    text = render_text("d", results, AT)
    assert "all quiet" not in text
    assert "m: not checked: 0% of 2 columns drifted, 1 not checked" in text
    assert "- country: not checked: no values in the reference window" in text
    assert results[0].history_rows() == [
        {"feature": "amount", "method": "ks", "score": 1.0, "level": "ok", "missing_current": 0.0}
    ]


def test_the_starter_configuration_follows_adr_0012() -> None:
    """PSI watch 0.1 / drift 0.2 from 1,000 reference rows, tests below at p < 0.05, and more than 30 %
    of the columns for the model: the values of the ADR's own configuration block."""
    import yaml

    adr = (ROOT / "knowledge" / "decisions" / "0012-drift-thresholds-v2.md").read_text()
    block = yaml.safe_load(adr.split("```yaml", 1)[1].split("```", 1)[0])
    config = load_digests(ROOT / "digests.yaml")
    digest = config.digests["model-drift"]
    limits = drift_limits(digest, digest.monitors[0])
    assert (limits.psi_watch, limits.psi_drift) == (
        block["feature_status"]["psi"]["watch"],
        block["feature_status"]["psi"]["drift"],
    )
    assert limits.p_value_drift == block["small_sample"]["p_value"]
    assert limits.small_sample == block["small_sample"]["min_rows"] - 1  # "fewer than 1,000" are small
    assert (limits.small_method, limits.large_method) == ("test", "psi")
    assert (
        limits.dataset_share == block["dataset_drift"]["drifted_feature_share"] and limits.dataset_more_than
    )


def test_method_and_thresholds_are_set_per_digest_and_per_column(tmp_path: Path) -> None:
    """The digest's method and bands apply to every column; a column's own override them."""
    rng = np.random.default_rng(1)
    rows = zip(rng.normal(0, 1, 400), rng.choice(["DE", "FR"], 400), strict=True)
    later = zip(rng.normal(0.4, 1, 400), rng.choice(["DE", "FR"], 400, p=[0.6, 0.4]), strict=True)
    (tmp_path / "ref.csv").write_text("amount,country\n" + "".join(f"{a},{c}\n" for a, c in rows))
    (tmp_path / "cur.csv").write_text("amount,country\n" + "".join(f"{a},{c}\n" for a, c in later))
    text = _monitor_yaml(
        drift="    drift:\n      method: psi\n      psi: {watch: 0.01, drift: 0.5}\n"
        "      dataset_share: {more_than: 0.5}\n",
        columns="        columns:\n          country: {method: chi2, p_value: {drift: 0.2, watch: 0.3}}\n",
    )
    digest = load_digests(_write(tmp_path, text)).digests["d"]
    (result,) = run_drift(digest, AT, tmp_path)
    assert result.drift is not None
    amount, country = result.drift.features
    assert (amount.method, amount.threshold, amount.level) == ("psi", 0.5, "watch")
    assert (country.method, country.threshold) == ("chi2", 0.2)
    assert result.drift.thresholds.dataset_more_than and result.drift.thresholds.dataset_share == 0.5


def test_more_than_a_share_is_strict() -> None:
    """{more_than: 0.3}: 3 of 10 drifting columns is not a model drift, 4 of 10 is; {at_least: 0.3}: 3 is."""
    rng = np.random.default_rng(2)
    base = rng.normal(0, 1, 500)
    kinds = {f"c{i}": "numeric" for i in range(10)}
    reference = dict.fromkeys(kinds, base)
    for moved, strict, level in ((3, True, "watch"), (4, True, "drift"), (3, False, "drift")):
        current = {name: base + (2.0 if i < moved else 0.0) for i, name in enumerate(kinds)}
        limits = Thresholds(dataset_share=0.3, dataset_more_than=strict)
        assert dataset_drift(kinds, reference, current, limits).level == level  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("drift", "columns", "message"),
    [
        (
            "    drift: {method: kolmogorov}\n",
            "",
            "line 6: digests.d.drift.method: 'kolmogorov' is not allowed",
        ),
        (
            "    drift: {method: ks}\n",
            "",
            "line 6: digests.d.drift.method: ks compares numbers, but column 'country' is categorical; "
            "give it its own method under columns: chi2, jensen_shannon, psi, test or distance",
        ),
        (
            "",
            "        columns:\n          country: {method: wasserstein}\n",
            "line 13: digests.d.monitors[0].columns.country.method: wasserstein compares numbers",
        ),
        (
            "",
            "        columns:\n          amout: {method: psi}\n",
            "line 13: digests.d.monitors[0].columns.amout: not a column of this monitor; "
            "name one of amount, country",
        ),
        (
            "    drift:\n      psi: {drift: 0.05}\n",
            "",
            "line 7: digests.d.drift.psi: watch (0.1) must be below drift (0.05); set both",
        ),
        (
            "    drift:\n      dataset_share: {more_than: 0.3, at_least: 0.5}\n",
            "",
            "line 7: digests.d.drift.dataset_share: give exactly one of at_least or more_than",
        ),
        ("    drift:\n      min_rows: 0\n", "", "line 7: digests.d.drift.min_rows"),
    ],
)
def test_drift_settings_errors_name_the_file_line_and_field(
    tmp_path: Path, drift: str, columns: str, message: str
) -> None:
    """A method that does not suit a column, an unknown column, watch past drift: file, line, field."""
    with pytest.raises(DigestConfigError) as raised:
        load_digests(_write(tmp_path, _monitor_yaml(drift, columns)))
    assert message in str(raised.value) and str(tmp_path / "digests.yaml") in str(raised.value)


def test_the_readme_states_the_code_defaults() -> None:
    """Each row of the documented drift settings table gives the default that Thresholds has."""
    import re

    section = docs_section("How drift is measured")
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| `([^`]+)` \|", section, re.MULTILINE))
    defaults = Thresholds()
    expected = {
        "method": "{small: test, large: distance}",
        "small_sample": str(defaults.small_sample),
        "min_rows": str(defaults.min_rows),
        "p_value": f"{{watch: {defaults.p_value_watch}, drift: {defaults.p_value_drift}}}",
        "distance": f"{{watch: {defaults.distance_watch}, drift: {defaults.distance_drift}}}",
        "psi": f"{{watch: {defaults.psi_watch}, drift: {defaults.psi_drift}}}",
        "missing": f"{{watch: {defaults.missing_watch}, drift: {defaults.missing_drift}}}",
        "dataset_share": f"{{at_least: {defaults.dataset_share}}}",
    }
    assert (defaults.small_method, defaults.large_method, defaults.dataset_more_than) == (
        "test",
        "distance",
        False,
    )
    assert rows == expected
