"""Puts Synapse's own mypy plugin (scripts-dev/mypy_synapse_plugin.py, which Synapse ships in its
source distribution but not in its wheel) at .venv/synapse-dev/, for the version of Synapse that is
installed, so `scripts/lint` type-checks the module as Synapse type-checks itself.

The source distribution is found on the index pip is configured for (pip's own finder), so no
address is written here; the file is read from the archive, never committed to this project.
"""

from __future__ import annotations

import io
import sys
import tarfile
from importlib import metadata
from pathlib import Path

PLUGIN = "scripts-dev/mypy_synapse_plugin.py"


def sdist_bytes(project: str, version: str) -> bytes:
    from pip._internal.commands import create_command
    from pip._internal.commands.download import DownloadCommand

    command = create_command("download")
    assert isinstance(command, DownloadCommand)
    options, _ = command.parse_args(["--no-deps", "--no-binary", ":all:"])
    with command.main_context():
        session = command.get_default_session(options)
        finder = command._build_package_finder(options, session)
        for candidate in finder.find_all_candidates(project):
            if str(candidate.version) == version and candidate.link.filename.endswith(".tar.gz"):
                response = session.get(candidate.link.url)
                response.raise_for_status()
                return bytes(response.content)
    raise SystemExit(f"synapse_mypy_plugin: no source distribution of {project} {version} on the index")


def main() -> None:
    version = metadata.version("matrix-synapse")
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".venv/synapse-dev")
    stamp = target / "VERSION"
    if stamp.exists() and stamp.read_text().strip() == version and (target / "mypy_synapse_plugin.py").exists():
        return
    with tarfile.open(fileobj=io.BytesIO(sdist_bytes("matrix-synapse", version))) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("/" + PLUGIN))
        source = archive.extractfile(member)
        assert source is not None
        target.mkdir(parents=True, exist_ok=True)
        (target / "mypy_synapse_plugin.py").write_bytes(source.read())
    stamp.write_text(version + "\n")
    print(f"synapse_mypy_plugin: Synapse {version}'s mypy plugin is at {target}/", file=sys.stderr)


if __name__ == "__main__":
    main()
