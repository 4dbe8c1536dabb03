"""The ``real`` tier of the benchmarks: SmolLM2-135M-Instruct on the two packaged lm-eval tasks."""

from __future__ import annotations

import pytest
from real_support import *  # noqa: F403 - the tier's fixtures (real_model, real_workspace)

pytestmark = [pytest.mark.real, pytest.mark.slow]

# Zero-shot, greedy log-likelihood scoring, measured on a 2-core x86 CPU in fp32: 46/60 and 22/60 questions.
# Another CPU may round a near tie the other way: two questions of margin.
EXPECTED = {"km_general_en": 46 / 60, "km_ceval_zh": 22 / 60}


def test_smollm2_scores_above_chance_and_as_recorded(real_model, real_workspace):
    pytest.importorskip("lm_eval")
    import kernel_magics as km

    result = km.evaluate("smollm2", tasks=list(EXPECTED), num_fewshot=0, batch_size=16)
    print(result.to_text())
    for task, expected in EXPECTED.items():
        assert result.score(task) == pytest.approx(expected, abs=2 / 60 + 1e-9), task
    assert result.score("km_general_en") >= 0.6  # chance is 0.25 (four answers)
    assert result.path is not None and result.path.parent == real_workspace / "benchmarks"
