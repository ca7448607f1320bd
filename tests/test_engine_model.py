"""model.conf is reviewed data; the engine composes rights by its set rule: a model answering otherwise is refused."""

from __future__ import annotations

import pytest

from sidecar.policy.engine import validate_model
from sidecar.policy.files import PolicyFileError
from tests.conftest import POLICY_DIR

MODEL = POLICY_DIR / "model.conf"
EFFECT = "e = some(where (p.eft == allow)) && !some(where (p.eft == deny))"
DOMAIN = '(p.dom == "*" || p.dom == r.dom) && '


def test_the_shipped_model_composes_as_the_engine_does() -> None:
    validate_model(MODEL, MODEL.read_text())


@pytest.mark.parametrize(("old", "new", "named"), [
    (EFFECT, "e = some(where (p.eft == allow))", "denied"),  # allow overrides: a deny no longer wins
    (EFFECT, "e = !some(where (p.eft == deny))", "not_held"),  # default allow
    (DOMAIN, "", "elsewhere"),  # another location's lines apply
    ("g(r.sub, p.sub, r.dom)", "r.sub == p.sub", "inherited"),  # roles ignored
])
def test_a_model_answering_otherwise_is_refused_naming_the_file(old: str, new: str, named: str) -> None:
    text = MODEL.read_text()
    assert old in text
    with pytest.raises(PolicyFileError) as refused:
        validate_model(MODEL, text.replace(old, new))
    assert "model.conf" in str(refused.value) and named in str(refused.value)
