"""The bad-input corpus of test_bad_input.py against the PostgreSQL store: every case gets
the same 4xx naming the problem, and the store (now shared) is exactly as it was."""

from __future__ import annotations

import pytest

from ..support.inprocess import app_client as make_client
from ..support.inprocess import wait_ready
from ..support.postgres import fresh_database, postgres  # noqa: F401 (fixture)
from .test_bad_input import (
    FORM_CASES,
    MAX_BATCH_ROWS,
    MAX_DATA_MB,
    PREDICT_CASES,
    SET_ID_CASES,
    UPLOAD_CASES,
    check_case,
)


@pytest.fixture(scope="module")
def pg_client(postgres, tmp_path_factory, yeast_npz_bytes):  # noqa: F811
    data_dir = tmp_path_factory.mktemp("bad-input-pg") / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LABELCUT_DATABASE_URL", fresh_database(postgres, "bad_input"))
        with make_client(data_dir, max_batch_rows=MAX_BATCH_ROWS, max_data_mb=MAX_DATA_MB) as c:
            wait_ready(c)
            assert c.app.state.service.store.dialect == "postgresql"
            for form in (
                {"objective": "f1"},
                {"objective": "fbeta", "beta": "2", "activate": "false"},
            ):
                response = c.post(
                    "/tune-thresholds", files={"file": ("v.npz", yeast_npz_bytes)}, data=form
                )
                assert response.status_code == 200, response.text
            yield c


@pytest.mark.parametrize(
    "case", [c.param() for c in UPLOAD_CASES + FORM_CASES + PREDICT_CASES + SET_ID_CASES]
)
def test_bad_input_on_postgres_is_refused_and_changes_nothing(pg_client, case):
    check_case(pg_client, case)
