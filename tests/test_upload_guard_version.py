"""The upload guard patches Synapse's request class, so it must refuse a Synapse it was not written for.

No server is needed: the refusal happens before anything is patched, when the module starts.
"""

from __future__ import annotations

import pytest
import synapse
from synapse.http.site import SynapseRequest

from medchat.synapse import upload_guard


def test_guard_refuses_an_unreviewed_synapse_release(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synapse, "__version__", "1.999.0")
    before = SynapseRequest.gotLength
    with pytest.raises(RuntimeError, match=r"written for Synapse 1\.163\.x, not 1\.999\.0.*upload_guard\.py"):
        upload_guard.guard_uploads(b"/api/upload/", lambda kind, length: None)
    assert SynapseRequest.gotLength is before  # nothing was patched


def test_the_installed_synapse_is_the_reviewed_one() -> None:
    """The pin in pyproject.toml and the guard's `WRITTEN_FOR` name the same minor release."""
    assert synapse.__version__.startswith(upload_guard.WRITTEN_FOR)
