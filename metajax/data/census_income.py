"""UCI Census-Income (KDD) as a multi-task problem, read from local files.

TFDS has no census-income dataset, so the data comes from a folder holding
``census-income.test.gz`` (99,762 rows) and, when available,
``census-income.data.gz`` (the 199,523-row training file); see
``../shared/data/README.md``. Tasks (Ma et al. 2018, group 1): income above
50K and marital status "Never married"; optionally a third, education at
least a bachelor's degree (then education is no longer a feature).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from metajax.data.checksums import verify_checksum
from metajax.data.errors import DataError
from metajax.data.multitask import MultiTaskBatch, MultiTaskDataset

COLUMNS = (
    "age", "class_of_worker", "detailed_industry_recode", "detailed_occupation_recode", "education",
    "wage_per_hour", "enrolled_in_edu_inst_last_wk", "marital_status", "major_industry_code",
    "major_occupation_code", "race", "hispanic_origin", "sex", "member_of_a_labor_union", "reason_for_unemployment",
    "full_or_part_time_employment_stat", "capital_gains", "capital_losses", "dividends_from_stocks",
    "tax_filer_status", "region_of_previous_residence", "state_of_previous_residence",
    "detailed_household_and_family_stat", "detailed_household_summary_in_household", "instance_weight",
    "migration_code_change_in_msa", "migration_code_change_in_reg", "migration_code_move_within_reg",
    "live_in_this_house_1_year_ago", "migration_prev_res_in_sunbelt", "num_persons_worked_for_employer",
    "family_members_under_18", "country_of_birth_father", "country_of_birth_mother", "country_of_birth_self",
    "citizenship", "own_business_or_self_employed", "fill_inc_questionnaire_for_veterans_admin",
    "veterans_benefits", "weeks_worked_in_year", "year", "income",
)  # fmt: skip
NUMERIC = (
    "age", "wage_per_hour", "capital_gains", "capital_losses", "dividends_from_stocks",
    "num_persons_worked_for_employer", "weeks_worked_in_year",
)  # fmt: skip
# A sampling weight, not a feature (the UCI documentation says so).
NOT_FEATURES = ("instance_weight",)
COLLEGE_DEGREES = (
    "Bachelors degree(BA AB BS)",
    "Masters degree(MA MS MEng MEd MSW MBA)",
    "Doctorate degree(PhD EdD)",
    "Prof school degree (MD DDS DVM LLB JD)",
)
# task name -> (column it is read from, function of the stripped value to 0/1)
TASKS = {
    "income": ("income", lambda value: value == "50000+."),
    "never_married": ("marital_status", lambda value: value == "Never married"),
    "college": ("education", lambda value: value in COLLEGE_DEGREES),
}
TEST_FILE = "census-income.test.gz"
TRAIN_FILE = "census-income.data.gz"


def parse_census_rows(lines: Iterable[str], source: str = "census-income") -> list[list[str]]:
    """Comma-separated census rows to lists of stripped strings; a row of the wrong width names its line."""
    rows = []
    for number, row in enumerate(csv.reader(lines), start=1):
        if not row:
            continue
        if len(row) != len(COLUMNS):
            raise DataError(
                f"{source}, line {number}: expected {len(COLUMNS)} comma-separated columns, got {len(row)}; "
                "is this the UCI census-income (KDD) file?"
            )
        rows.append([value.strip() for value in row])
    return rows


def _read_rows(path: Path) -> list[list[str]]:
    verify_checksum(path)
    try:
        with gzip.open(path, "rb") as compressed:
            text = io.TextIOWrapper(compressed, encoding="latin-1")
            return parse_census_rows(text, str(path))
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DataError(f"could not read {path}: {error}; download it again (see ../shared/data/README.md)") from error


def _table(rows: Sequence[Sequence[str]]) -> np.ndarray:
    """The rows as a ``[rows, columns]`` array of their strings, so that a column is one slice.

    Picking each column out row by row in Python, for every feature and split, made a
    census load take 6.0 s instead of 4.3 on the build machine's CPU (the same arrays).
    """
    table = np.empty((len(rows), len(COLUMNS)), dtype=object)
    if len(rows):
        table[:] = rows
    return table


class CensusEncoder:
    """One-hot categorical columns and standardized numeric ones, fitted on training rows only.

    A category never seen in training encodes as all zeros.
    """

    def __init__(self, train_rows: Sequence[Sequence[str]], feature_columns: Sequence[str]):
        self.feature_columns = tuple(feature_columns)
        index = {name: COLUMNS.index(name) for name in self.feature_columns}
        self._index = index
        self.means, self.stds, self.vocabularies = {}, {}, {}
        table = _table(train_rows)
        for name in self.feature_columns:
            values = table[:, index[name]]
            if name in NUMERIC:
                numbers = np.asarray(values, dtype=np.float64)
                self.means[name] = numbers.mean()
                self.stds[name] = numbers.std() or 1.0
            else:
                self.vocabularies[name] = {value: i for i, value in enumerate(sorted(set(values)))}
        self.feature_names = []
        for name in self.feature_columns:
            if name in NUMERIC:
                self.feature_names.append(name)
            else:
                self.feature_names.extend(f"{name}={value}" for value in self.vocabularies[name])

    def __call__(self, rows: Sequence[Sequence[str]]) -> np.ndarray:
        blocks = []
        table = _table(rows)
        for name in self.feature_columns:
            values = table[:, self._index[name]]
            if name in NUMERIC:
                numbers = np.asarray(values, dtype=np.float64)
                blocks.append(((numbers - self.means[name]) / self.stds[name])[:, None])
            else:
                vocabulary = self.vocabularies[name]
                one_hot = np.zeros((len(rows), len(vocabulary)))
                codes = np.asarray([vocabulary.get(value, -1) for value in values])
                known = codes >= 0
                one_hot[np.flatnonzero(known), codes[known]] = 1.0
                blocks.append(one_hot)
        return np.concatenate(blocks, axis=1).astype(np.float32)


def census_labels(rows: Sequence[Sequence[str]], tasks: Sequence[str]) -> np.ndarray:
    """``[rows, tasks]`` 0/1 labels."""
    columns, table = [], _table(rows)
    for task in tasks:
        column, is_positive = TASKS[task]
        columns.append([is_positive(value) for value in table[:, COLUMNS.index(column)]])
    return np.asarray(columns, dtype=np.float32).T


def census_dataset(
    train_rows: Sequence[Sequence[str]],
    validation_rows: Sequence[Sequence[str]],
    test_rows: Sequence[Sequence[str]],
    tasks: Sequence[str] = ("income", "never_married"),
) -> MultiTaskDataset:
    """Encodes parsed rows: features fitted on ``train_rows``, label columns never features."""
    unknown = [task for task in tasks if task not in TASKS]
    if unknown or not tasks:
        raise ValueError(f"census tasks must be a non-empty subset of {', '.join(TASKS)}, got {list(tasks)}")
    label_columns = {TASKS[task][0] for task in tasks} | {TASKS["income"][0], TASKS["never_married"][0]}
    features = [name for name in COLUMNS if name not in label_columns and name not in NOT_FEATURES]
    encode = CensusEncoder(train_rows, features)
    splits = [
        MultiTaskBatch(encode(rows), census_labels(rows, tasks)) for rows in (train_rows, validation_rows, test_rows)
    ]
    train, validation, test = splits
    return MultiTaskDataset(
        train,
        validation,
        test,
        task_names=tuple(tasks),
        task_kinds=("binary",) * len(tasks),
        feature_names=tuple(encode.feature_names),
    )


def load_census_income(
    data_dir: str | Path,
    *,
    tasks: Sequence[str] = ("income", "never_married"),
    seed: int = 0,
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> MultiTaskDataset:
    """Census-income from ``data_dir``.

    With the training file present, it is the training split and the test
    file is halved (seeded) into validation and test, as keras-mmoe does.
    Otherwise the 99,762-row test file alone is shuffled with ``seed`` and cut
    by ``split_fractions`` into train / validation / test.

    Raises:
      DataError: the folder or file is missing or unreadable, saying where it looked.
    """
    folder = Path(data_dir)
    test_path = folder / TEST_FILE
    if not test_path.is_file():
        raise DataError(
            f"census-income not found: looked for {test_path}. Pass --data-dir pointing at a folder with "
            f"{TEST_FILE} (and optionally {TRAIN_FILE}) from the UCI Census-Income (KDD) dataset; "
            "see ../shared/data/README.md"
        )
    if len(split_fractions) != 3 or min(split_fractions) <= 0 or abs(sum(split_fractions) - 1) > 1e-6:
        raise ValueError(f"split_fractions must be three positive fractions summing to 1, got {split_fractions}")
    other_rows = _read_rows(test_path)
    order = np.random.default_rng(seed).permutation(len(other_rows))
    if (folder / TRAIN_FILE).is_file():
        train_rows = _read_rows(folder / TRAIN_FILE)
        half = len(order) // 2
        validation_rows = [other_rows[i] for i in order[:half]]
        test_rows = [other_rows[i] for i in order[half:]]
    else:
        train_end = int(round(split_fractions[0] * len(order)))
        validation_end = train_end + int(round(split_fractions[1] * len(order)))
        train_rows, validation_rows, test_rows = (
            [other_rows[i] for i in order[start:end]]
            for start, end in ((0, train_end), (train_end, validation_end), (validation_end, len(order)))
        )
    return census_dataset(train_rows, validation_rows, test_rows, tasks)
