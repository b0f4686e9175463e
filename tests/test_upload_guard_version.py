"""The upload guard patches Synapse's request class, so it must refuse a Synapse it was not written for.

No server is needed: the refusal happens before anything is patched, when the module starts.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import synapse
from synapse.http.site import SynapseRequest

from medchat.synapse import upload_guard


def test_guard_refuses_an_unreviewed_synapse_release(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synapse, "__version__", "1.999.0")
    before = SynapseRequest.gotLength
    with pytest.raises(
        RuntimeError, match=r"written for Synapse 1\.162\.x, 1\.163\.x, not 1\.999\.0.*upload_guard\.py"
    ):
        upload_guard.guard_uploads(b"/api/upload/", lambda kind, length: None)
    assert SynapseRequest.gotLength is before  # nothing was patched


def test_the_installed_synapse_is_the_reviewed_one() -> None:
    """The installed Synapse is one the guard was reviewed for."""
    assert synapse.__version__.startswith(upload_guard.WRITTEN_FOR)


def test_the_declared_range_is_the_reviewed_minors() -> None:
    """pyproject.toml's Synapse range and `WRITTEN_FOR` name the same minor releases, at least two."""
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    low, high = re.search(r'"matrix-synapse\[[^]]*\]>=1\.(\d+)\.0,<1\.(\d+)"', text).groups()  # type: ignore[union-attr]
    assert tuple(f"1.{minor}." for minor in range(int(low), int(high))) == upload_guard.WRITTEN_FOR
    assert len(upload_guard.WRITTEN_FOR) >= 2
