"""The reward sources saved with a run (rewards.py) never hold values whose names look like secrets."""

from __future__ import annotations

from kernel_magics.train.methods.rewards import resolve_rewards, sources_file

HF_TOKEN = "hf_sEcReTvAlUe123"
MAX_TOKENS = 12  # a number: never a secret, saved as it is
Api_Key = b"bytes-secret-456"
PREFIX = "ok:"


def _make_reward():  # noqa: ANN202 - a reward function with a secret in its closure
    db_password = "pw-closure-789"

    def scored(completions, **kwargs):
        if not (HF_TOKEN and db_password and Api_Key):
            raise ValueError("no credentials")
        return [float(len(c) <= MAX_TOKENS and c.startswith(PREFIX)) for c in completions]

    return scored


def test_secret_looking_values_are_read_from_the_environment_not_saved(monkeypatch):
    text, notes = sources_file(resolve_rewards([_make_reward()]))
    for secret in ("hf_sEcReTvAlUe123", "pw-closure-789", "bytes-secret-456"):
        assert secret not in text
    assert "HF_TOKEN = os.environ['HF_TOKEN']  # not saved: the name looks like a secret" in text
    assert "db_password = os.environ['db_password']" in text and "Api_Key = os.environ['Api_Key']" in text
    assert "MAX_TOKENS = 12\n" in text and "PREFIX = 'ok:'\n" in text and "import os\n" in text
    assert notes == [
        "reward scored: Api_Key, HF_TOKEN, db_password not saved in rewards.py (the names look like secrets); the "
        "saved file reads them from environment variables of the same names"
    ]
    for name in ("HF_TOKEN", "db_password", "Api_Key"):
        monkeypatch.setenv(name, "from-env")
    namespace: dict = {}
    exec(compile(text, "rewards.py", "exec"), namespace)  # noqa: S102 - the file the run saves
    assert namespace["scored"](completions=["ok:short", "ok:much too long", "no"]) == [1.0, 0.0, 0.0]
